"""ExitNotice: how a handle of a kernel that is not our child learns and tells its end.

A local process's end comes from the OS (:mod:`.process`); a kernel on a
cluster or behind someone else's provisioner is known to have ended when its
handle hears so (a node's supervisor, a scheduler, a ``poll``). This is that
handle's part of the ProvisionedKernel contract: one exit code, set once,
``wait`` and ``on_exit`` callbacks called soon, in the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["ExitNotice", "ExitNoticed"]


class ExitNotice:
    """One kernel's end: :attr:`returncode` once :meth:`ended` was called."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def is_set(self) -> bool:
        return self._exited.is_set()

    def ended(self, code: int) -> bool:
        """Record the end (the first call wins); False if it was already recorded."""
        if self.returncode is not None:
            return False
        self.returncode = code
        self._exited.set()
        loop = asyncio.get_running_loop()
        for callback in list(self._callbacks):  # as a local process's: soon, in the loop
            loop.call_soon(callback)
        return True

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def on_exit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` in the loop at the end (soon, if it came); returns the undo."""
        self._callbacks.append(callback)
        if self._exited.is_set():
            asyncio.get_running_loop().call_soon(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove


class ExitNoticed:
    """The ProvisionedKernel methods a handle with an ExitNotice (``self._exit``) gets
    from it: ``returncode``, ``is_alive``, ``wait``, ``on_exit``.
    """

    _exit: ExitNotice

    @property
    def returncode(self) -> int | None:
        return self._exit.returncode

    def is_alive(self) -> bool:
        return self._exit.returncode is None

    async def wait(self) -> int:
        return await self._exit.wait()

    def on_exit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` in the loop when the kernel ends (soon, if it has)."""
        return self._exit.on_exit(callback)
