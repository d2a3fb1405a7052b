"""What the SDK's calls return (E2B's names where they fit)."""

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

#: Output MIME types and the :class:`Result` fields that hold them.
_MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "text/latex": "latex",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/svg+xml": "svg",
    "application/json": "json",
    "application/javascript": "javascript",
}


@dataclass
class Result:
    """One rich result of a run: a figure, or (``is_main_result``) the trailing value.

    Binary types (``png``, ``jpeg``) are base64 text, as notebooks carry them.
    """

    text: Optional[str] = None
    html: Optional[str] = None
    markdown: Optional[str] = None
    latex: Optional[str] = None
    png: Optional[str] = None
    jpeg: Optional[str] = None
    svg: Optional[str] = None
    json: Optional[str] = None
    javascript: Optional[str] = None
    is_main_result: bool = False
    extra: Dict[str, str] = field(default_factory=dict)

    def formats(self) -> List[str]:
        """The formats this result has."""
        names = [name for name in _MIME_FIELDS.values() if getattr(self, name) is not None]
        return names + list(self.extra)

    def png_bytes(self) -> Optional[bytes]:
        """The PNG decoded, if there is one."""
        return base64.b64decode(self.png) if self.png is not None else None


@dataclass
class Logs:
    """What a run printed, in the chunks it arrived in."""

    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)


@dataclass
class ExecutionError:
    """The error a run raised: its type's name, its message, and the traceback text."""

    name: str
    value: str
    traceback: str


@dataclass
class Execution:
    """The outcome of :meth:`Sandbox.run_code`."""

    results: List[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: Optional[ExecutionError] = None
    execution_count: int = 0

    @property
    def text(self) -> Optional[str]:
        """The main result's text, if the run ended with a value."""
        for result in self.results:
            if result.is_main_result:
                return result.text
        return None


@dataclass
class CommandResult:
    """How a command ended: its exit code and everything it printed."""

    exit_code: int
    stdout: str
    stderr: str
    error: Optional[str] = None


@dataclass
class EntryInfo:
    """An entry of :meth:`Files.list`."""

    name: str
    type: str
    size: int
    path: str


def results_from(outputs: List[Dict[str, Any]]) -> List[Result]:
    """The envelope's ``outputs`` as results: each figure a result of its own, and the
    trailing value (its ``text/plain`` and the rich forms before it) the main result."""
    results: List[Result] = []
    for output in outputs:
        mime, data = output.get("mime", ""), output.get("data", "")
        result = Result()
        name = _MIME_FIELDS.get(mime)
        if name is None:
            result.extra[mime] = data
        else:
            setattr(result, name, data)
        result.is_main_result = mime == "text/plain"
        results.append(result)
    return results
