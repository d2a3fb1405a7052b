"""Drives CodeBeaker's MCP server with the official MCP Python SDK (PyPI `mcp`), as an agent
host would, and checks what an agent sees. Exits non-zero with a message on the first
mismatch.

    python3 mcp_client.py stdio --config examples/mcp/stdio.json --binary target/debug/codebeaker-server [--python]
    python3 mcp_client.py http --url http://127.0.0.1:5000/mcp [--token T] [--python]

`stdio` reads the agent host's configuration file (Claude Desktop style `mcpServers`) and
spawns the server exactly as configured, with the command replaced by `--binary`.
`--python` also runs Python code (needs the Docker backend).
"""

import argparse
import asyncio
import json
import os
import sys

import jsonschema
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

EXPECTED_TOOLS = {
    "snapshot_session",
    "fork_session",
    "start_process",
    "read_process_output",
    "write_process_input",
    "kill_process",
    "run_code",
    "run_shell",
    "write_file",
    "read_file",
    "list_directory",
    "create_session",
    "close_session",
    "list_sessions",
}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs", "schema")


def method_reply(tool, result, method):
    """The session tools answer their JSON-RPC method's reply: as structured content, as the
    same JSON in text, valid against the method's result schema in docs/schema/."""
    reply = result.structured_content
    if reply is None or json.loads(texts(result)[0]) != reply:
        fail(f"{tool} gave structured content {reply} and text {texts(result)}")
    check_schema(tool, reply, method)
    return reply


def check_schema(tool, reply, method):
    with open(os.path.join(SCHEMA_DIR, f"{method}.result.json")) as file:
        schema = json.load(file)
    errors = [error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(reply)]
    if errors:
        fail(f"{tool} reply does not match {method}.result.json: {errors}")


def texts(result):
    return [block.text for block in result.content if getattr(block, "type", None) == "text"]


async def call(client, tool, arguments, expect_error=False):
    result = await client.call_tool(tool, arguments)
    if bool(result.is_error) != expect_error:
        fail(f"{tool}({arguments}) is_error={result.is_error}, expected {expect_error}: {texts(result)}")
    return result


async def scenario(client, with_python):
    tools = await client.list_tools()
    names = {tool.name for tool in tools.tools}
    if names != EXPECTED_TOOLS:
        fail(f"tools are {sorted(names)}, expected {sorted(EXPECTED_TOOLS)}")
    for tool in tools.tools:
        if not tool.description:
            fail(f"tool {tool.name} has no description")
        for name, schema in tool.input_schema.get("properties", {}).items():
            if not schema.get("description"):
                fail(f"input {name} of tool {tool.name} has no description: {schema}")
    run_code = next(t for t in tools.tools if t.name == "run_code")
    if set(run_code.input_schema.get("required", [])) != {"language", "code"}:
        fail(f"run_code requires {run_code.input_schema.get('required')}")

    # TypeScript on Deno, with state kept across calls of the same MCP session.
    first = await call(client, "run_code", {"language": "typescript", "code": "const n: number = 41; globalThis.kept = n; console.log('set', n)"})
    if not any("set 41" in t for t in texts(first)):
        fail(f"first run_code said {texts(first)}")
    second = await call(client, "run_code", {"language": "typescript", "code": "console.log(globalThis.kept + 1)"})
    if "42" not in texts(second):
        fail(f"state was not kept across calls: {texts(second)}")
    envelope = second.structured_content or {}
    if envelope.get("success") is not True or envelope.get("result") != "42":
        fail(f"run_code's structured content is not the session.execute envelope: {envelope}")
    check_schema("run_code", envelope, "session.execute")

    # A file written by one tool is read back by another, and by code.
    await call(client, "write_file", {"language": "typescript", "path": "notes/../hello.txt", "content": "hello from mcp"})
    read = await call(client, "read_file", {"language": "typescript", "path": "/workspace/hello.txt"})
    if texts(read) != ["hello from mcp"]:
        fail(f"read_file gave {texts(read)}")
    by_code = await call(client, "run_code", {"language": "ts", "code": "console.log(await Deno.readTextFile('hello.txt'))"})
    if "hello from mcp" not in texts(by_code):
        fail(f"code read {texts(by_code)}")
    listing = await call(client, "list_directory", {"language": "typescript"})
    entries = json.loads(texts(listing)[0])["entries"]
    if not any(e["name"] == "hello.txt" and e["size"] == 14 for e in entries):
        fail(f"list_directory gave {entries}")

    # Clear tool errors for bad input.
    bad_language = await call(client, "run_code", {"language": "cobol", "code": "x"}, expect_error=True)
    if "cobol" not in texts(bad_language)[0]:
        fail(f"unknown language error: {texts(bad_language)}")
    missing = await call(client, "read_file", {"language": "typescript", "path": "missing.txt"}, expect_error=True)
    if texts(missing)[0] != "File not found: /workspace/missing.txt":
        fail(f"missing file error: {texts(missing)}")
    escape = await call(client, "read_file", {"language": "typescript", "path": "../../etc/passwd"}, expect_error=True)
    if "root:" in " ".join(texts(escape)):
        fail("read outside the workspace")
    thrown = await call(client, "run_code", {"language": "typescript", "code": "console.log('before'); throw new TypeError('boom')"}, expect_error=True)
    if "TypeError: boom" not in texts(thrown)[0] or "before" not in texts(thrown):
        fail(f"thrown error: {texts(thrown)}")
    unknown = await call(client, "close_session", {"session_id": "no-such-session"}, expect_error=True)
    if "Session not found: no-such-session" not in texts(unknown)[0]:
        fail(f"unknown session: {texts(unknown)}")
    shell_in_deno = await call(client, "run_shell", {"language": "typescript", "command": "ls"}, expect_error=True)
    if "Not supported" not in texts(shell_in_deno)[0]:
        fail(f"shell in a Deno session: {texts(shell_in_deno)}")

    # Explicit sessions.
    created = await call(client, "create_session", {"language": "deno"})
    info = method_reply("create_session", created, "session.create")
    session_id = info["sessionId"]
    if (
        info["capabilities"]["persistentState"] is not True
        or info["language"] != "typescript"
        or info["backend"] != "deno"
    ):
        fail(f"deno session: {info}")
    await call(client, "run_code", {"language": "typescript", "session_id": session_id, "code": "globalThis.own = 7"})
    isolated = await call(client, "run_code", {"language": "typescript", "code": "console.log(typeof globalThis.own)"})
    if texts(isolated) != ["undefined"]:
        fail(f"sessions are not isolated: {texts(isolated)}")
    listed = method_reply("list_sessions", await call(client, "list_sessions", {}), "session.list")
    ids = {s["sessionId"] for s in listed["sessions"]}
    if session_id not in ids or listed["count"] < 2:
        fail(f"list_sessions gave {listed}")
    # Background processes are not a Deno capability: a clear tool error.
    no_processes = await call(client, "start_process", {"session_id": session_id, "command_name": "ls"}, expect_error=True)
    if "background processes" not in texts(no_processes)[0]:
        fail(f"start_process in a Deno session: {texts(no_processes)}")
    closed = method_reply("close_session", await call(client, "close_session", {"session_id": session_id}), "session.close")
    if closed != {"sessionId": session_id, "closed": True}:
        fail(f"close_session gave {closed}")

    if with_python:
        py = await call(client, "run_code", {"language": "python", "code": "import sys\nprint(sys.version_info[0] * 14)"})
        if "42" not in texts(py)[-1]:
            fail(f"python said {texts(py)}")
        shell = await call(client, "run_shell", {"command": "echo out; echo err >&2; exit 3"})
        text = texts(shell)[-1]
        if "exit code: 3" not in text or "out" not in text or "err" not in text:
            fail(f"run_shell said {text}")
        await processes(client)
    print("OK: MCP scenario passed")


async def snapshots(client, session_id):
    """A snapshot, a session made from it, and a fork (of the files: stateReset true)."""
    await call(client, "write_file", {"session_id": session_id, "path": "kept.txt", "content": "kept"})
    snapshot = method_reply("snapshot_session", await call(client, "snapshot_session", {"session_id": session_id}), "session.snapshot")
    restored = method_reply("create_session", await call(client, "create_session", {"language": "python", "from_snapshot": snapshot["snapshotId"]}), "session.create")
    kept = await call(client, "read_file", {"session_id": restored["sessionId"], "path": "kept.txt"})
    if texts(kept) != ["kept"]:
        fail(f"a session from a snapshot read {texts(kept)}")
    forked = method_reply("fork_session", await call(client, "fork_session", {"session_id": session_id}), "session.fork")
    if forked["stateReset"] is not True or forked["forkedFrom"] != session_id:
        fail(f"fork_session gave {forked}")


async def processes(client):
    """The process tools in this connection's python (Docker) session."""
    script = "for i in 1 2 3; do echo tick $i; sleep 0.1; done; read line; echo got $line"
    started = await call(client, "start_process", {"command_name": "bash", "args": ["-c", script]})
    pid = method_reply("start_process", started, "process.start")["pid"]
    sessions = (await call(client, "list_sessions", {})).structured_content["sessions"]
    session_id = next(s["sessionId"] for s in sessions if s["language"] == "python")
    await call(client, "write_process_input", {"session_id": session_id, "pid": pid, "data": "hello\n", "close_stdin": True})
    text, offset, exit = "", 0, None
    for _ in range(100):
        read = await call(client, "read_process_output", {"session_id": session_id, "pid": pid, "from_offset": offset, "wait_ms": 1000})
        reply = read.structured_content or {}
        text += "".join(chunk["data"] for chunk in reply.get("chunks", []))
        offset = reply.get("nextOffset", offset)
        exit = reply.get("exit")
        if exit is not None:
            break
    if text != "tick 1\ntick 2\ntick 3\ngot hello\n" or exit is None or exit.get("exitCode") != 0:
        fail(f"read_process_output gave {text!r}, exit {exit}")
    sleeper = await call(client, "start_process", {"command_name": "sleep", "args": ["600"], "session_id": session_id})
    sleeper_pid = sleeper.structured_content["pid"]
    killed = await call(client, "kill_process", {"session_id": session_id, "pid": sleeper_pid, "signal": "TERM"})
    if (killed.structured_content or {}).get("signal") != "TERM":
        fail(f"kill_process gave {texts(killed)}")
    gone = await call(client, "write_process_input", {"session_id": session_id, "pid": 99999, "data": "x"}, expect_error=True)
    if "no process 99999" not in texts(gone)[0]:
        fail(f"an unknown pid: {texts(gone)}")
    await snapshots(client, session_id)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--config", help="agent host configuration (stdio)")
    parser.add_argument("--binary", help="the codebeaker-server binary (stdio)")
    parser.add_argument("--url", help="the /mcp URL (http)")
    parser.add_argument("--token")
    parser.add_argument("--python", action="store_true")
    args = parser.parse_args()
    if args.transport == "stdio":
        with open(args.config) as file:
            server = json.load(file)["mcpServers"]["codebeaker"]
        # The host's environment for the server, plus the test's CodeBeaker and Docker settings.
        env = get_default_environment()
        env.update({k: v for k, v in os.environ.items() if k.startswith(("CODEBEAKER_", "DOCKER_", "RUST_LOG"))})
        env.update(server.get("env") or {})
        params = StdioServerParameters(command=args.binary, args=server["args"], env=env)
        target = params
    else:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
        target = streamable_http_client(args.url, http_client=create_mcp_http_client(headers=headers))
    async with Client(target) as client:
        await scenario(client, args.python)


if __name__ == "__main__":
    asyncio.run(main())
