"""sys.stdout and sys.stderr of the kernel: text goes to IOPub as stream messages."""

from __future__ import annotations

import io

from kernelyard.kernel.context import RequestContext
from kernelyard.kernel.publisher import Publisher

__all__ = ["OutStream"]


class OutStream(io.TextIOBase):
    """A text stream named ``stdout`` or ``stderr`` whose writes become stream messages.

    Writes go to the request the writing code runs for (see
    :mod:`kernelyard.kernel.context`). ``flush()`` never blocks: it asks the
    publisher to send soon (see :mod:`kernelyard.kernel.publisher`).
    """

    def __init__(
        self, name: str, publisher: Publisher, requests: RequestContext, *, fileno: int
    ) -> None:
        super().__init__()
        self._fileno = fileno
        self._name = name
        self._publisher = publisher
        self._requests = requests

    @property
    def name(self) -> str:
        return self._name

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """The descriptor below this stream (1 or 2, captured: see :mod:`.fdcapture`), so
        ``subprocess.run(..., stdout=sys.stdout)`` reaches the frontend too."""
        return self._fileno

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        request = self._requests.get()
        self._publisher.stream(self._name, s, request.msg if request is not None else None)
        return len(s)

    def flush(self) -> None:
        self._publisher.flush()
