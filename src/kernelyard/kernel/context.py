"""Which request is the code running right now working for?

Each request handler runs with :data:`current_request` set (asyncio tasks copy
it, so tasks a cell starts keep writing to that cell). Threads that user code
starts begin with an empty context; they fall back to the execute request the
main shell started last, as ipykernel does.
"""

from __future__ import annotations

from contextvars import ContextVar

from kernelyard.kernel.session import Request

__all__ = ["RequestContext", "current_request"]

current_request: ContextVar[Request | None] = ContextVar("kernelyard_request", default=None)


class RequestContext:
    """The current request, with the main shell's latest execute as a fallback."""

    def __init__(self) -> None:
        self.fallback: Request | None = None

    def get(self) -> Request | None:
        return current_request.get() or self.fallback
