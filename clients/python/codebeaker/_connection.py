"""One JSON-RPC 2.0 connection over the server's WebSocket, shared by a sandbox's calls.

Requests are matched to responses by id; ``session.output`` notifications go to the
request that streams them, ``process.output``/``process.exit`` to the handle of that
process (kept until one registers, since a start's response comes just before its first
output). A dropped connection is opened again by the next call, and process handles are
attached again from where they stopped.
"""

import asyncio
import json
import os
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Tuple

import websockets

from .errors import AuthenticationError, CodeBeakerError, from_rpc
from .errors import TimeoutError as SdkTimeout

#: Where the SDK connects when neither ``url`` nor ``CODEBEAKER_URL`` says.
DEFAULT_URL = "ws://127.0.0.1:5000"

#: Process notifications kept for a process no handle listens to yet, at most.
_UNCLAIMED = 1024

Listener = Callable[[str, Dict[str, Any]], None]


def endpoints(url: Optional[str], token: Optional[str]) -> Tuple[str, str]:
    """The WebSocket URL of the JSON-RPC API (with the token) and the HTTP base URL."""
    base = (url or os.environ.get("CODEBEAKER_URL") or DEFAULT_URL).rstrip("/")
    if base.endswith("/ws/jsonrpc"):
        base = base[: -len("/ws/jsonrpc")]
    scheme, rest = base.split("://", 1) if "://" in base else ("ws", base)
    secure = scheme in ("wss", "https")
    http = f"{'https' if secure else 'http'}://{rest}"
    ws = f"{'wss' if secure else 'ws'}://{rest}/ws/jsonrpc"
    token = token if token is not None else os.environ.get("CODEBEAKER_TOKEN")
    if token:
        ws += "?token=" + urllib.parse.quote(token, safe="")
    return ws, http


class Connection:
    """See the module docs."""

    def __init__(self, url: Optional[str], token: Optional[str]) -> None:
        self.ws_url, self.http_url = endpoints(url, token)
        self.token = token if token is not None else os.environ.get("CODEBEAKER_TOKEN")
        self._ws: Any = None
        self._reader: Optional["asyncio.Task[None]"] = None
        self._next_id = 0
        self._pending: Dict[int, "asyncio.Future[Dict[str, Any]]"] = {}
        self._streams: Dict[int, Listener] = {}
        self._processes: Dict[Tuple[str, int], Listener] = {}
        self._unclaimed: Dict[Tuple[str, int], List[Tuple[str, Dict[str, Any]]]] = {}
        self._reattach: Dict[Tuple[str, int], Callable[[], Any]] = {}
        self._opening = asyncio.Lock()
        self._closed = False

    async def open(self) -> None:
        """Connects (again); an HTTP 401 or 403 is an :class:`AuthenticationError`."""
        try:
            self._ws = await websockets.connect(self.ws_url, max_size=None, open_timeout=30)
        except Exception as error:  # websockets' InvalidStatus / InvalidStatusCode, OSError
            response = getattr(error, "response", None)
            status = getattr(response, "status_code", None) or getattr(error, "status_code", None)
            if status in (401, 403):
                raise AuthenticationError(f"the server refused the connection (HTTP {status})") from error
            raise CodeBeakerError(f"cannot connect to {self.ws_url.split('?')[0]}: {error}") from error
        self._reader = asyncio.ensure_future(self._read(self._ws))

    async def _ensure_open(self) -> None:
        if self._closed:
            raise CodeBeakerError("the sandbox is closed")
        async with self._opening:
            if self._ws is not None:
                return
            await self.open()
            for reattach in list(self._reattach.values()):
                await reattach()

    async def _read(self, ws: Any) -> None:
        try:
            async for text in ws:
                message = json.loads(text)
                for item in message if isinstance(message, list) else [message]:
                    self._dispatch(item)
        except Exception:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CodeBeakerError("the connection to the server closed"))
            self._pending.clear()

    def _dispatch(self, message: Dict[str, Any]) -> None:
        if "id" in message and ("result" in message or "error" in message):
            future = self._pending.pop(message["id"], None) if isinstance(message["id"], int) else None
            if future is not None and not future.done():
                future.set_result(message)
            return
        method, params = message.get("method"), message.get("params") or {}
        if method == "session.output":
            listener = self._streams.get(params.get("requestId"))
            if listener is not None:
                listener(method, params)
        elif method in ("process.output", "process.exit"):
            key = (params.get("sessionId"), params.get("pid"))
            listener = self._processes.get(key)
            if listener is not None:
                listener(method, params)
            else:
                kept = self._unclaimed.setdefault(key, [])
                if len(kept) < _UNCLAIMED:
                    kept.append((method, params))

    def listen(self, session_id: str, pid: int, listener: Listener, reattach: Callable[[], Any]) -> None:
        """Gives ``listener`` the notifications of process ``pid``, those that came first
        included; ``reattach`` runs after a reconnect."""
        key = (session_id, pid)
        self._processes[key] = listener
        self._reattach[key] = reattach
        for method, params in self._unclaimed.pop(key, []):
            listener(method, params)

    def forget(self, session_id: str, pid: int) -> None:
        """Stops giving process ``pid``'s notifications to its handle."""
        self._processes.pop((session_id, pid), None)
        self._reattach.pop((session_id, pid), None)

    async def call(
        self,
        method: str,
        params: Dict[str, Any],
        stream: Optional[Listener] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """The result of ``method``, or its error as a :class:`CodeBeakerError`."""
        await self._ensure_open()
        self._next_id += 1
        request_id = self._next_id
        future: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if stream is not None:
            self._streams[request_id] = stream
        try:
            text = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            await self._ws.send(text)
            if timeout is None:
                message = await future
            else:
                try:
                    message = await asyncio.wait_for(future, timeout)
                except asyncio.TimeoutError as error:
                    raise SdkTimeout(f"{method} got no answer within {timeout} s") from error
        finally:
            self._pending.pop(request_id, None)
            self._streams.pop(request_id, None)
        if "error" in message:
            raise from_rpc(message["error"])
        return message["result"]

    async def close(self) -> None:
        """Closes the WebSocket; later calls fail."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
