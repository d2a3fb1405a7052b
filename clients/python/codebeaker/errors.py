"""Errors of the SDK: every one is a :class:`CodeBeakerError`."""

from typing import Any, Optional


class CodeBeakerError(Exception):
    """A request the server refused or could not do.

    ``code`` is the JSON-RPC error code (``None`` for errors of the SDK itself) and
    ``data`` the server's detail, which names what was wrong.
    """

    def __init__(self, message: str, code: Optional[int] = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class TimeoutError(CodeBeakerError):  # noqa: A001 - E2B's name, in this package's namespace
    """A command or a wait outlived its timeout."""


class SessionNotFoundError(CodeBeakerError):
    """No open session has this id (closed, expired, never existed, or another tenant's)."""


class AuthenticationError(CodeBeakerError):
    """The server refused the token (HTTP 401) or the origin (HTTP 403)."""


class RateLimitedError(CodeBeakerError):
    """The tenant's request rate was exceeded; the detail says when to retry."""


class CommandExitError(CodeBeakerError):
    """A foreground command exited with a non-zero code; carries its result."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"command exited with code {exit_code}: {stderr.strip()[-500:]}")
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr


#: JSON-RPC error codes of the protocol (docs/protocol.md, *Error codes*).
SESSION_NOT_FOUND = -32001
LIMIT_REACHED = -32002


def from_rpc(error: dict) -> CodeBeakerError:
    """The SDK error for a JSON-RPC error object."""
    code = error.get("code")
    data = error.get("data")
    message = f"{error.get('message', 'error')}: {data}" if data else str(error.get("message", "error"))
    if code == SESSION_NOT_FOUND:
        return SessionNotFoundError(message, code, data)
    if code == LIMIT_REACHED and isinstance(data, str) and data.startswith("rate limit"):
        return RateLimitedError(message, code, data)
    if code == -32603 and isinstance(data, str) and "timed out" in data.lower():
        return TimeoutError(message, code, data)
    return CodeBeakerError(message, code, data)
