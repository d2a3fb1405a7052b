"""The synchronous SDK: :class:`Sandbox`, the asynchronous one run on a private event loop
in a background thread (so it works in scripts and in notebooks that run their own)."""

import asyncio
import threading
from typing import Any, Callable, Coroutine, Dict, List, Optional, TypeVar, Union

from ._async import AsyncCommandHandle, AsyncSandbox, OutputHandler
from .models import CommandResult, EntryInfo, Execution

T = TypeVar("T")

_loop: Optional[asyncio.AbstractEventLoop] = None
_lock = threading.Lock()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs ``coroutine`` on the SDK's loop and waits for its result."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="codebeaker", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result()


def _in_loop(factory: Callable[[], T]) -> T:
    async def make() -> T:
        return factory()

    return _run(make())


class CommandHandle:
    """A background command (or a terminal): ``pid``, ``wait()``, ``kill()``,
    ``send_stdin(data)``."""

    def __init__(self, inner: AsyncCommandHandle) -> None:
        self._inner = inner

    @property
    def pid(self) -> int:
        return self._inner.pid

    @property
    def stdout(self) -> str:
        return self._inner.stdout

    @property
    def stderr(self) -> str:
        return self._inner.stderr

    @property
    def exit_code(self) -> Optional[int]:
        return self._inner.exit_code

    def wait(self, timeout: Optional[float] = None) -> CommandResult:
        return _run(self._inner.wait(timeout))

    def kill(self) -> bool:
        return _run(self._inner.kill())

    def send_stdin(self, data: Union[str, bytes]) -> None:
        _run(self._inner.send_stdin(data))

    def close_stdin(self) -> None:
        _run(self._inner.close_stdin())

    def resize(self, cols: int, rows: int) -> None:
        _run(self._inner.resize(cols, rows))

    def disconnect(self) -> None:
        _run(self._inner.disconnect())


class Commands:
    """``sandbox.commands`` (see :class:`codebeaker.AsyncSandbox`'s)."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._inner = sandbox.commands

    def run(
        self,
        cmd: str,
        background: bool = False,
        on_stdout: OutputHandler = None,
        on_stderr: OutputHandler = None,
        timeout: Optional[float] = None,
        envs: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> Any:
        ran = _run(self._inner.run(cmd, background, on_stdout, on_stderr, timeout, envs, cwd))
        return CommandHandle(ran) if background else ran

    def connect(self, pid: int, on_stdout: OutputHandler = None, on_stderr: OutputHandler = None) -> CommandHandle:
        return CommandHandle(_run(self._inner.connect(pid, on_stdout, on_stderr)))

    def list(self) -> List[Dict[str, Any]]:
        return _run(self._inner.list())

    def kill(self, pid: int) -> bool:
        return _run(self._inner.kill(pid))


class Pty:
    """``sandbox.pty``: interactive terminals."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._inner = sandbox.pty

    def create(
        self,
        cols: int = 80,
        rows: int = 24,
        on_data: Optional[Callable[[bytes], Any]] = None,
        cmd: str = "bash",
        envs: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> CommandHandle:
        return CommandHandle(_run(self._inner.create(cols, rows, on_data, cmd, envs, cwd)))


class Files:
    """``sandbox.files``: the session's ``/workspace``."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._inner = sandbox.files

    def write(self, path: str, data: Union[str, bytes]) -> EntryInfo:
        return _run(self._inner.write(path, data))

    def read(self, path: str, format: str = "text") -> Union[str, bytes]:
        return _run(self._inner.read(path, format))

    def list(self, path: str = ".") -> List[EntryInfo]:
        return _run(self._inner.list(path))

    def exists(self, path: str) -> bool:
        return _run(self._inner.exists(path))

    def make_dir(self, path: str) -> None:
        _run(self._inner.make_dir(path))

    def remove(self, path: str) -> None:
        _run(self._inner.remove(path))

    def upload(self, path: str, data: Union[bytes, str]) -> int:
        return _run(self._inner.upload(path, data))

    def download(self, path: str) -> bytes:
        return _run(self._inner.download(path))


class Sandbox:
    """A session on a CodeBeaker server, with blocking calls. ``Sandbox.create(...)``
    (or ``Sandbox.connect(session_id)``), a context manager, ``close()`` when done."""

    def __init__(self, inner: AsyncSandbox) -> None:
        self._inner = inner
        self.commands = Commands(inner)
        self.files = Files(inner)
        self.pty = Pty(inner)

    @classmethod
    def create(
        cls,
        language: str = "python",
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        backend: Optional[str] = None,
        **options: Any,
    ) -> "Sandbox":
        return cls(_run(AsyncSandbox.create(language, url, token, timeout, backend, **options)))

    @classmethod
    def connect(cls, session_id: str, url: Optional[str] = None, token: Optional[str] = None) -> "Sandbox":
        return cls(_run(AsyncSandbox.connect(session_id, url, token)))

    @property
    def session_id(self) -> str:
        return self._inner.session_id

    @property
    def language(self) -> str:
        return self._inner.language

    @property
    def backend(self) -> str:
        return self._inner.backend

    @property
    def node(self) -> Optional[str]:
        """The cluster node holding the session, on a server that is a node of a cluster."""
        return self._inner.node

    @property
    def capabilities(self) -> Dict[str, bool]:
        return self._inner.capabilities

    def run_code(
        self,
        code: str,
        on_stdout: OutputHandler = None,
        on_stderr: OutputHandler = None,
        timeout: Optional[float] = None,
    ) -> Execution:
        return _run(self._inner.run_code(code, on_stdout, on_stderr, timeout))

    def is_running(self) -> bool:
        return _run(self._inner.is_running())

    def close(self) -> None:
        _run(self._inner.close())

    kill = close

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
