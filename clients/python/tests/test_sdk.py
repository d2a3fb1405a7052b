"""The SDK against a live server (``CODEBEAKER_URL``): Docker python sessions when
``CODEBEAKER_SDK_DOCKER=1``, TypeScript on Deno always."""

import asyncio
import os
import time

import pytest

from codebeaker import (
    AsyncSandbox,
    CodeBeakerError,
    CommandExitError,
    RateLimitedError,
    Sandbox,
    SessionNotFoundError,
    TimeoutError,
)

URL = os.environ.get("CODEBEAKER_URL")
pytestmark = pytest.mark.skipif(not URL, reason="CODEBEAKER_URL names no server")
#: A server admitting 1 request/s with a burst of 2.
LIMITED_URL = os.environ.get("CODEBEAKER_RATE_LIMITED_URL")
needs_docker = pytest.mark.skipif(
    os.environ.get("CODEBEAKER_SDK_DOCKER") != "1", reason="Docker sessions need CODEBEAKER_SDK_DOCKER=1"
)


@needs_docker
def test_run_code_gives_the_value_the_output_and_the_error():
    with Sandbox.create(language="python", url=URL) as sb:
        assert sb.session_id
        execution = sb.run_code("x = 41\nprint('hello')\nx + 1")
        assert execution.error is None
        assert execution.text == "42"
        assert [r.text for r in execution.results if r.is_main_result] == ["42"]
        assert "hello\n" in "".join(execution.logs.stdout)
        assert execution.execution_count == 1
        failed = sb.run_code("raise ValueError('boom')")
        assert failed.error is not None
        assert (failed.error.name, failed.error.value) == ("ValueError", "boom")
        assert "Traceback" in failed.error.traceback
        seen = []
        sb.run_code("import sys\nprint('out')\nprint('err', file=sys.stderr)", on_stdout=seen.append, on_stderr=seen.append)
        assert "out\n" in "".join(seen) and "err\n" in "".join(seen)
        with pytest.raises(TimeoutError):
            sb.run_code("import time\ntime.sleep(30)", timeout=1)
        assert sb.run_code("x").text == "41", "state outlives a timeout"
        plotted = sb.run_code("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])")
        pngs = [r.png_bytes() for r in plotted.results if r.png]
        assert pngs and pngs[0].startswith(b"\x89PNG")


@needs_docker
def test_commands_run_in_the_foreground_and_the_background():
    with Sandbox.create(language="python", url=URL) as sb:
        assert sb.commands.run("echo hi").stdout == "hi\n"
        with pytest.raises(CommandExitError) as raised:
            sb.commands.run("echo partial; echo bad >&2; exit 3")
        assert (raised.value.exit_code, raised.value.stdout, raised.value.stderr) == (3, "partial\n", "bad\n")
        ticks = []
        handle = sb.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.05; done", background=True, on_stdout=ticks.append)
        assert handle.pid > 0
        assert handle.wait(timeout=30).stdout == "tick 1\ntick 2\ntick 3\n"
        assert "".join(ticks) == "tick 1\ntick 2\ntick 3\n"
        reader = sb.commands.run("read line; echo got $line", background=True)
        reader.send_stdin("it\n")
        assert reader.wait(timeout=30).stdout == "got it\n"
        sleeper = sb.commands.run("echo started; sleep 100", background=True)
        again = sb.commands.connect(sleeper.pid)
        assert sleeper.kill()
        with pytest.raises(CommandExitError):
            again.wait(timeout=30)
        assert "started\n" in again.stdout
        data = []
        terminal = sb.pty.create(cols=100, rows=30, on_data=data.append, cmd="sh")
        terminal.send_stdin("stty size; exit\n")
        terminal.wait(timeout=30)
        assert "30 100" in b"".join(data).decode()


@needs_docker
def test_files_hold_text_and_bytes():
    with Sandbox.create(language="python", url=URL) as sb:
        sb.files.write("notes/a.txt", "héllo")
        assert sb.files.read("notes/a.txt") == "héllo"
        blob = bytes(range(256))
        sb.files.write("blob.bin", blob)
        assert sb.files.read("blob.bin", format="bytes") == blob
        names = [entry.name for entry in sb.files.list("notes")]
        assert names == ["a.txt"]
        assert sb.run_code("open('notes/a.txt').read()").text == "'héllo'"
        big = os.urandom(3 * 1024 * 1024)
        assert sb.files.upload("big.bin", big) == len(big)
        assert sb.files.download("big.bin") == big
        sb.files.remove("notes/a.txt")
        assert not sb.files.exists("notes/a.txt")
        with pytest.raises(CodeBeakerError):
            sb.files.read("missing.txt")


def test_typescript_on_deno():
    with Sandbox.create(language="typescript", url=URL) as sb:
        execution = sb.run_code("const answer: number = 6 * 7; console.log(answer)")
        assert execution.error is None
        assert "".join(execution.logs.stdout) == "42\n"
        failed = sb.run_code("throw new Error('boom')")
        assert failed.error is not None and "boom" in failed.error.value
        sb.files.write("a.txt", "from the sdk")
        assert sb.run_code("console.log(await Deno.readTextFile('a.txt'))").logs.stdout == ["from the sdk\n"]
        assert sb.files.download("a.txt") == b"from the sdk"
        # A refusal of the file routes is the SDK's error, told apart by its kind.
        with pytest.raises(CodeBeakerError) as missing:
            sb.files.download("missing.bin")
        assert missing.value.kind == "not_found", missing.value
    # The file routes of a closed session answer as for an unknown one.
    with pytest.raises(SessionNotFoundError):
        sb.files.download("a.txt")


def test_async_sandbox_and_reconnecting():
    async def main():
        async with await AsyncSandbox.create(language="typescript", url=URL) as sb:
            execution = await sb.run_code("console.log('async')")
            assert execution.logs.stdout == ["async\n"]
            again = await AsyncSandbox.connect(sb.session_id, url=URL)
            assert (await again.run_code("console.log(1 + 1)")).logs.stdout == ["2\n"]
            await again._connection.close()
        with pytest.raises(SessionNotFoundError):
            await AsyncSandbox.connect(sb.session_id, url=URL)

    asyncio.run(main())


def test_a_dropped_websocket_is_reopened_by_the_next_call():
    async def main():
        async with await AsyncSandbox.create(language="typescript", url=URL) as sb:
            await sb.run_code("globalThis.kept = 41")
            dropped = sb._connection._ws
            # The socket goes away under the sandbox (as a network drop would end it).
            dropped.transport.abort()
            for _ in range(100):
                if sb._connection._ws is None:
                    break
                await asyncio.sleep(0.01)
            execution = await sb.run_code("console.log(globalThis.kept + 1)")
            assert execution.logs.stdout == ["42\n"], "the session lived on the server"
            assert sb._connection._ws is not dropped

    asyncio.run(main())


@pytest.mark.skipif(not LIMITED_URL, reason="CODEBEAKER_RATE_LIMITED_URL names no server")
def test_a_request_over_the_rate_raises_rate_limited_error():
    sb = Sandbox.create(language="typescript", url=LIMITED_URL)
    with pytest.raises(RateLimitedError) as raised:
        for _ in range(10):
            sb.run_code("1")
    limited = raised.value
    assert isinstance(limited, CodeBeakerError)
    assert (limited.code, limited.kind) == (-32002, "rate_limited")
    assert 0 < limited.retry_after <= 2, limited.retry_after
    time.sleep(limited.retry_after + 0.05)
    sb.close()
