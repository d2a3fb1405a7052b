"""The asynchronous SDK: :class:`AsyncSandbox` and its ``commands``, ``files`` and ``pty``."""

import asyncio
import base64
import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from ._connection import Connection
from .errors import CodeBeakerError, CommandExitError, SessionNotFoundError, from_http
from .errors import TimeoutError as SdkTimeout
from .models import CommandResult, EntryInfo, Execution, ExecutionError, Logs, results_from

OutputHandler = Optional[Callable[[str], Any]]

#: Most bytes one file command moves; larger files go through the file routes.
_COMMAND_BYTES = 16 * 1024 * 1024


def _ms(seconds: Optional[float]) -> Optional[int]:
    return None if seconds is None else max(1, int(seconds * 1000))


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Turns a file route's HTTP refusal into the SDK's error for it."""
    try:
        yield
    except urllib.error.HTTPError as error:
        raise from_http(error.code, error.read(), error.headers.get("Retry-After")) from error


def _failed(envelope: Dict[str, Any]) -> CodeBeakerError:
    """The error of an envelope that says ``success: false`` for other than the program."""
    message = envelope.get("error") or "the command failed"
    kind = envelope.get("errorKind")
    if kind == "timed_out":
        return SdkTimeout(message, kind=kind)
    return CodeBeakerError(message, kind=kind)


class AsyncSandbox:
    """A session on a CodeBeaker server. Create one with :meth:`create` (or reattach with
    :meth:`connect`), use it as an async context manager, and :meth:`close` it."""

    def __init__(self, connection: Connection, info: Dict[str, Any], timeout: Optional[float]) -> None:
        self._connection = connection
        self.session_id: str = info["sessionId"]
        self.language: str = info.get("language", "")
        self.backend: str = info.get("backend", "")
        # The cluster node holding the session (its URL), on a server that is a node of a cluster.
        self.node: Optional[str] = info.get("node")
        self.capabilities: Dict[str, bool] = info.get("capabilities", {})
        self._timeout = timeout
        self._executions = int(info.get("executionCount", 0))
        self.commands = AsyncCommands(self)
        self.files = AsyncFiles(self)
        self.pty = AsyncPty(self)

    @classmethod
    async def create(
        cls,
        language: str = "python",
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        backend: Optional[str] = None,
        **options: Any,
    ) -> "AsyncSandbox":
        """A new session of ``language`` (``python``, ``javascript``, ``typescript``, ``go``,
        ``csharp``). ``timeout`` (seconds) is its commands' default limit; ``options`` are
        further ``session.create`` params (``memoryLimitMB``, ``backendOptions``...)."""
        connection = Connection(url, token)
        await connection.open()
        params: Dict[str, Any] = {"language": language, **options}
        if backend is not None:
            params["backend"] = backend
        if timeout is not None:
            params["defaultTimeoutMs"] = _ms(timeout)
        try:
            info = await connection.call("session.create", params)
        except BaseException:
            await connection.close()
            raise
        return cls(connection, info, timeout)

    @classmethod
    async def connect(cls, session_id: str, url: Optional[str] = None, token: Optional[str] = None) -> "AsyncSandbox":
        """The open session ``session_id``, reached over a new connection."""
        connection = Connection(url, token)
        await connection.open()
        listed = await connection.call("session.list", {})
        for info in listed.get("sessions", []):
            if info.get("sessionId") == session_id:
                return cls(connection, info, None)
        await connection.close()
        raise SessionNotFoundError(f"no open session {session_id}", -32001, session_id, "session_not_found")

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _execute(
        self,
        command: Dict[str, Any],
        timeout: Optional[float],
        on_stdout: OutputHandler = None,
        on_stderr: OutputHandler = None,
        logs: Optional[Logs] = None,
    ) -> Dict[str, Any]:
        def stream(_method: str, params: Dict[str, Any]) -> None:
            data = params.get("data", "")
            if params.get("stream") == "stderr":
                if logs is not None:
                    logs.stderr.append(data)
                if on_stderr is not None:
                    on_stderr(data)
            else:
                if logs is not None:
                    logs.stdout.append(data)
                if on_stdout is not None:
                    on_stdout(data)

        params: Dict[str, Any] = {"sessionId": self.session_id, "command": command, "errorKinds": True}
        if command["type"] in ("execute_code", "execute_shell"):
            params["stream"] = True
        limit = timeout if timeout is not None else self._timeout
        if limit is not None:
            params["timeoutMs"] = _ms(limit)
        return await self._connection.call("session.execute", params, stream=stream)

    async def run_code(
        self,
        code: str,
        on_stdout: OutputHandler = None,
        on_stderr: OutputHandler = None,
        timeout: Optional[float] = None,
    ) -> Execution:
        """Runs ``code`` in the session's interpreter (state kept between runs where the
        session says ``persistentState``). A program's own error is ``Execution.error``;
        a timeout raises :class:`codebeaker.TimeoutError`."""
        logs = Logs()
        envelope = await self._execute({"type": "execute_code", "code": code}, timeout, on_stdout, on_stderr, logs)
        self._executions += 1
        if not logs.stdout and not logs.stderr and isinstance(envelope.get("result"), str) and envelope["result"]:
            logs.stdout.append(envelope["result"])  # a backend that does not stream
        error = None
        if not envelope.get("success"):
            if envelope.get("errorKind") not in (None, "program_failed"):
                raise _failed(envelope)
            message = envelope.get("error") or ""
            name, _, value = message.partition(": ")
            if not value or " " in name:
                name, value = "Error", message
            error = ExecutionError(name=name, value=value, traceback="".join(logs.stderr) or message)
        return Execution(
            results=results_from(envelope.get("outputs") or []),
            logs=logs,
            error=error,
            execution_count=self._executions,
        )

    async def is_running(self) -> bool:
        """Whether the session is still open."""
        listed = await self._connection.call("session.list", {})
        return any(info.get("sessionId") == self.session_id for info in listed.get("sessions", []))

    async def close(self) -> None:
        """Closes the session (its sandbox and files go) and the connection."""
        try:
            await self._connection.call("session.close", {"sessionId": self.session_id})
        except SessionNotFoundError:
            pass
        finally:
            await self._connection.close()

    kill = close


class AsyncCommandHandle:
    """A background command (or a terminal): its ``pid``, output so far, and controls."""

    def __init__(self, sandbox: AsyncSandbox, on_stdout: OutputHandler, on_stderr: OutputHandler) -> None:
        self._sandbox = sandbox
        self.pid = 0
        self.stdout = ""
        self.stderr = ""
        self.exit_code: Optional[int] = None
        self.error: Optional[str] = None
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._next = {"stdout": 0, "stderr": 0, "pty": 0}
        self._exited: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    def _listen(self, pid: int) -> None:
        self.pid = pid
        connection = self._sandbox._connection

        async def reattach() -> None:
            await connection.call("process.attach", {"sessionId": self._sandbox.session_id, "pid": pid})

        connection.listen(self._sandbox.session_id, pid, self._notified, reattach)

    def _notified(self, method: str, params: Dict[str, Any]) -> None:
        if method == "process.exit":
            code = params.get("exitCode")
            self.exit_code = -1 if code is None else int(code)
            self.error = params.get("reason")
            if not self._exited.done():
                self._exited.set_result(None)
            return
        stream, data, offset = params.get("stream", "stdout"), params.get("data", ""), params.get("offset", 0)
        if offset < self._next.get(stream, 0):
            return  # a replay after a reconnect: already seen
        self._next[stream] = offset + len(data.encode())
        handler = self._on_stderr if stream == "stderr" else self._on_stdout
        if stream == "stderr":
            self.stderr += data
        else:
            self.stdout += data
        if handler is not None:
            handler(data)

    async def _control(self, method: str, **params: Any) -> Any:
        return await self._sandbox._connection.call(
            method, {"sessionId": self._sandbox.session_id, "pid": self.pid, **params}
        )

    async def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the end; a non-zero exit raises :class:`CommandExitError`."""
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except asyncio.TimeoutError as error:
            raise SdkTimeout(f"process {self.pid} did not end within {timeout} s") from error
        self._sandbox._connection.forget(self._sandbox.session_id, self.pid)
        exit_code = self.exit_code if self.exit_code is not None else -1
        if exit_code != 0:
            raise CommandExitError(exit_code, self.stdout, self.stderr)
        return CommandResult(exit_code=exit_code, stdout=self.stdout, stderr=self.stderr, error=self.error)

    async def kill(self) -> bool:
        """Kills it (``SIGKILL`` to its process group); ``False`` when it had ended."""
        try:
            await self._control("process.signal", signal="KILL")
            return True
        except CodeBeakerError:
            return False

    async def send_stdin(self, data: Union[str, bytes]) -> None:
        """Writes ``data`` to its stdin (or its terminal)."""
        text = data.decode() if isinstance(data, bytes) else data
        await self._control("process.write", data=text)

    async def close_stdin(self) -> None:
        """Closes its stdin."""
        await self._control("process.closeStdin")

    async def resize(self, cols: int, rows: int) -> None:
        """Resizes its terminal."""
        await self._control("process.resize", cols=cols, rows=rows)

    async def disconnect(self) -> None:
        """Stops receiving its output; it runs on."""
        self._sandbox._connection.forget(self._sandbox.session_id, self.pid)


class AsyncCommands:
    """``sandbox.commands``: shell command lines, in the foreground or the background."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sandbox = sandbox

    async def run(
        self,
        cmd: str,
        background: bool = False,
        on_stdout: OutputHandler = None,
        on_stderr: OutputHandler = None,
        timeout: Optional[float] = None,
        envs: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> Any:
        """Runs ``cmd`` with ``sh -c``. In the foreground: its :class:`CommandResult`, or
        :class:`CommandExitError` for a non-zero exit. With ``background``: an
        :class:`AsyncCommandHandle` at once."""
        if background:
            command: Dict[str, Any] = {"commandName": "sh", "args": ["-c", cmd]}
            if envs:
                command["env"] = envs
            if cwd:
                command["cwd"] = cwd
            params: Dict[str, Any] = {"sessionId": self._sandbox.session_id, "command": command}
            if timeout is not None:
                params["timeoutMs"] = _ms(timeout)
            handle = AsyncCommandHandle(self._sandbox, on_stdout, on_stderr)
            started = await self._sandbox._connection.call("process.start", params)
            handle._listen(int(started["pid"]))
            return handle
        shell: Dict[str, Any] = {"type": "execute_shell", "commandName": "sh", "args": ["-c", cmd]}
        if envs:
            shell["env"] = envs
        if cwd:
            shell["workingDirectory"] = cwd
        envelope = await self._sandbox._execute(shell, timeout, on_stdout, on_stderr)
        if not envelope.get("success"):
            raise _failed(envelope)
        result = envelope["result"]
        done = CommandResult(exit_code=int(result["exitCode"]), stdout=result["stdout"], stderr=result["stderr"])
        if done.exit_code != 0:
            raise CommandExitError(done.exit_code, done.stdout, done.stderr)
        return done

    async def connect(
        self, pid: int, on_stdout: OutputHandler = None, on_stderr: OutputHandler = None
    ) -> AsyncCommandHandle:
        """A handle on background process ``pid`` (its output replayed from the start)."""
        handle = AsyncCommandHandle(self._sandbox, on_stdout, on_stderr)
        handle._listen(pid)
        await handle._control("process.attach", fromOffset=0)
        return handle

    async def list(self) -> List[Dict[str, Any]]:
        """The session's background processes, running or ended."""
        return await self._sandbox._connection.call("process.list", {"sessionId": self._sandbox.session_id})

    async def kill(self, pid: int) -> bool:
        """Kills background process ``pid``; ``False`` when it had ended."""
        try:
            await self._sandbox._connection.call(
                "process.signal", {"sessionId": self._sandbox.session_id, "pid": pid, "signal": "KILL"}
            )
            return True
        except CodeBeakerError:
            return False


class AsyncPty:
    """``sandbox.pty``: interactive terminals."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sandbox = sandbox

    async def create(
        self,
        cols: int = 80,
        rows: int = 24,
        on_data: Optional[Callable[[bytes], Any]] = None,
        cmd: str = "bash",
        envs: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> AsyncCommandHandle:
        """Starts ``cmd`` (a shell by default) on a terminal of ``cols`` x ``rows``;
        ``on_data`` gets what it writes, as bytes."""
        command: Dict[str, Any] = {"commandName": cmd}
        if envs:
            command["env"] = envs
        if cwd:
            command["cwd"] = cwd
        params = {"sessionId": self._sandbox.session_id, "command": command, "pty": {"cols": cols, "rows": rows}}
        on_text = (lambda text: on_data(text.encode())) if on_data is not None else None
        handle = AsyncCommandHandle(self._sandbox, on_text, on_text)
        started = await self._sandbox._connection.call("process.start", params)
        handle._listen(int(started["pid"]))
        return handle


class AsyncFiles:
    """``sandbox.files``: the session's ``/workspace``."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sandbox = sandbox

    async def _command(self, command: Dict[str, Any]) -> Dict[str, Any]:
        envelope = await self._sandbox._execute(command, None)
        if not envelope.get("success"):
            raise _failed(envelope)
        return envelope["result"]

    async def write(self, path: str, data: Union[str, bytes]) -> EntryInfo:
        """Writes ``data`` (text, or bytes as they are) to ``path``, replacing it."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if len(raw) > _COMMAND_BYTES:
            await self.upload(path, raw)
            written = len(raw)
        elif isinstance(data, str):
            written = (await self._command({"type": "write_file", "path": path, "content": data}))["bytes"]
        else:
            content = base64.b64encode(raw).decode("ascii")
            command = {"type": "write_file", "path": path, "content": content, "encoding": "base64"}
            written = (await self._command(command))["bytes"]
        return EntryInfo(name=path.rsplit("/", 1)[-1], type="file", size=int(written), path=path)

    async def read(self, path: str, format: str = "text") -> Union[str, bytes]:
        """The file at ``path``: ``format="text"`` (UTF-8) or ``"bytes"``."""
        if format not in ("text", "bytes"):
            raise CodeBeakerError(f"format must be 'text' or 'bytes', not {format!r}")
        raw = base64.b64decode((await self._command({"type": "read_file", "path": path, "encoding": "base64"}))["content"])
        return raw.decode() if format == "text" else raw

    async def list(self, path: str = ".") -> List[EntryInfo]:
        """The entries of the directory at ``path``, sorted by name."""
        listed = await self._command({"type": "list_directory", "path": path})
        base = listed.get("path", path).rstrip("/")
        return [
            EntryInfo(name=e["name"], type=e["type"], size=int(e.get("size", 0)), path=f"{base}/{e['name']}")
            for e in listed.get("entries", [])
        ]

    async def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        parent, _, name = path.rstrip("/").rpartition("/")
        try:
            return any(entry.name == name for entry in await self.list(parent or "."))
        except CodeBeakerError:
            return False

    async def make_dir(self, path: str) -> None:
        """Creates the directory ``path`` and its parents."""
        await self._command({"type": "create_directory", "path": path})

    async def remove(self, path: str) -> None:
        """Deletes the file (or empty directory) at ``path``."""
        await self._command({"type": "delete_file", "path": path})

    def _route(self, path: str) -> str:
        relative = path[len("/workspace/") :] if path.startswith("/workspace/") else path.lstrip("/")
        quoted = urllib.parse.quote(relative)
        return f"{self._sandbox._connection.http_url}/v1/sessions/{self._sandbox.session_id}/files/{quoted}"

    def _headers(self) -> Dict[str, str]:
        token = self._sandbox._connection.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def upload(self, path: str, data: Union[bytes, str]) -> int:
        """Streams ``data`` (bytes, or the path of a local file) into ``path`` through the
        file routes, any size; the bytes written."""

        def put() -> int:
            body = open(data, "rb") if isinstance(data, str) else data  # noqa: SIM115 - closed below
            try:
                request = urllib.request.Request(self._route(path), data=body, method="PUT", headers=self._headers())
                if isinstance(data, str):
                    request.add_header("Content-Length", str(os.path.getsize(data)))
                with _refusals():
                    with urllib.request.urlopen(request, timeout=600) as response:
                        return int(json.loads(response.read())["bytes"])
            finally:
                if not isinstance(body, (bytes, bytearray)):
                    body.close()

        return await asyncio.get_running_loop().run_in_executor(None, put)

    async def download(self, path: str) -> bytes:
        """The whole file at ``path``, streamed through the file routes (any size)."""

        def get() -> bytes:
            request = urllib.request.Request(self._route(path), headers=self._headers())
            with _refusals():
                with urllib.request.urlopen(request, timeout=600) as response:
                    return response.read()

        return await asyncio.get_running_loop().run_in_executor(None, get)
