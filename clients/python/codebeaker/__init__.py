"""CodeBeaker's Python SDK: sandboxes for AI agents on a CodeBeaker server.

>>> from codebeaker import Sandbox
>>> with Sandbox.create(language="python", url="ws://127.0.0.1:5000") as sb:  # doctest: +SKIP
...     print(sb.run_code("6 * 7").text)
42

The server's URL comes from ``url`` or ``CODEBEAKER_URL`` (default
``ws://127.0.0.1:5000``), its token from ``token`` or ``CODEBEAKER_TOKEN``. Names follow
E2B's where they fit; times are seconds.
"""

from ._async import AsyncCommandHandle, AsyncSandbox
from ._sync import CommandHandle, Sandbox
from .errors import (
    AuthenticationError,
    CodeBeakerError,
    CommandExitError,
    RateLimitedError,
    SessionNotFoundError,
    TimeoutError,
)
from .models import CommandResult, EntryInfo, Execution, ExecutionError, Logs, Result

__all__ = [
    "AsyncCommandHandle",
    "AsyncSandbox",
    "AuthenticationError",
    "CodeBeakerError",
    "CommandExitError",
    "CommandHandle",
    "CommandResult",
    "EntryInfo",
    "Execution",
    "ExecutionError",
    "Logs",
    "RateLimitedError",
    "Result",
    "Sandbox",
    "SessionNotFoundError",
    "TimeoutError",
]
