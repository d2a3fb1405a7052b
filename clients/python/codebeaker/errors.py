"""Errors of the SDK: every one is a :class:`CodeBeakerError`."""

import json
from typing import Any, Optional


class CodeBeakerError(Exception):
    """A request the server refused or could not do.

    ``code`` is the JSON-RPC error code (``None`` for errors of the SDK itself), ``kind``
    the server's finer kind of failure (``"rate_limited"``, ``"timed_out"``,
    ``"invalid_input"``...; see the protocol's *Error codes*) and ``data`` the server's
    detail, which names what was wrong.
    """

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
        self.kind = kind


class TimeoutError(CodeBeakerError):  # noqa: A001 - E2B's name, in this package's namespace
    """A command or a wait outlived its timeout."""


class SessionNotFoundError(CodeBeakerError):
    """No open session has this id (closed, expired, never existed, or another tenant's)."""


class AuthenticationError(CodeBeakerError):
    """The server refused the token (HTTP 401) or the origin (HTTP 403)."""


class RateLimitedError(CodeBeakerError):
    """The tenant's request rate was exceeded; ``retry_after`` says when to retry, in seconds."""

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None, retry_after: float = 0.0) -> None:
        super().__init__(message, code, data, "rate_limited")
        self.retry_after = retry_after


class CommandExitError(CodeBeakerError):
    """A foreground command exited with a non-zero code; carries its result."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"command exited with code {exit_code}: {stderr.strip()[-500:]}")
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr


def from_rpc(error: dict) -> CodeBeakerError:
    """The SDK error for a JSON-RPC error object: decided by its ``kind``, never its text."""
    code = error.get("code")
    data = error.get("data")
    kind = error.get("kind")
    message = f"{error.get('message', 'error')}: {data}" if data else str(error.get("message", "error"))
    if kind == "session_not_found":
        return SessionNotFoundError(message, code, data, kind)
    if kind == "rate_limited":
        return RateLimitedError(message, code, data, (error.get("retryAfterMs") or 0) / 1000)
    if kind == "timed_out":
        return TimeoutError(message, code, data, kind)
    return CodeBeakerError(message, code, data, kind)


def from_http(status: int, body: bytes, retry_after: Optional[str] = None) -> CodeBeakerError:
    """The SDK error for a refused file route: decided by its status and ``error.code``."""
    try:
        error = json.loads(body or b"{}").get("error") or {}
    except ValueError:
        error = {}
    kind = error.get("code")
    message = f"{status}: {error.get('message') or 'the file route refused the request'}"
    if status in (401, 403):
        return AuthenticationError(message, None, None, kind)
    if kind == "session_not_found":
        return SessionNotFoundError(message, None, None, kind)
    if kind == "timed_out":
        return TimeoutError(message, None, None, kind)
    if status == 429:
        return RateLimitedError(message, None, None, float(retry_after or 1))
    return CodeBeakerError(message, None, None, kind)
