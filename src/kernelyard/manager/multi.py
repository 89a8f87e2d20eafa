"""MultiKernelManager: many kernels by id, each supervised by its own restarter.

Starts are independent: each awaits only its own kernel, so a slow or failing
start never delays another (no global lock, and ports cannot collide; see
:mod:`kernelyard.provisioning.ports`). ``shutdown_all`` stops kernels in
parallel. It implements :class:`~kernelyard.backend.KernelBackend`.

Use it as an async context manager; the restarters live in its task group::

    async with MultiKernelManager() as kernels:
        kernel_id = await kernels.start_kernel("python3")
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from kernelyard.backend import KernelChannels, KernelModel
from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.errors import InvalidState, NoSuchKernel
from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.restarter import KernelRestarter, RestartEvent
from kernelyard.wire import Message

__all__ = ["MultiKernelManager"]

RestartCallback = Callable[[RestartEvent], object]


class _ClientChannels:
    """KernelChannels over a KernelClient subscribed to every channel."""

    def __init__(self, client: KernelClient, messages: MemoryObjectReceiveStream[Message]) -> None:
        self._client = client
        self._messages = messages

    async def send(self, msg: Message) -> None:
        await self._client.send(msg)

    async def receive(self) -> Message:
        return await self._messages.receive()


class MultiKernelManager:
    """Kernels by id. ``manager_options`` go to every KernelManager it creates."""

    def __init__(
        self,
        *,
        finder: KernelFinder | None = None,
        default_type_id: str | None = None,
        restart: bool = True,
        restart_limit: int = 5,
        on_died: RestartCallback | None = None,
        on_restarted: RestartCallback | None = None,
        on_failed: RestartCallback | None = None,
        manager_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.finder = finder or KernelFinder.default()
        self.default_type_id = default_type_id
        self.restart = restart
        self.restart_limit = restart_limit
        self._on_died, self._on_restarted, self._on_failed = on_died, on_restarted, on_failed
        self.manager_options = dict(manager_options or {})
        self._kernels: dict[str, KernelManager] = {}
        self._tasks: TaskGroup | None = None

    # -- lifetime ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tasks is not None:
            raise InvalidState("the MultiKernelManager is already open")
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, None
        try:
            with anyio.CancelScope(shield=True):
                await self.shutdown_all()
        finally:
            if tasks is not None:
                tasks.cancel_scope.cancel()
                await tasks.__aexit__(exc_type, exc, tb)

    # -- lookup ----------------------------------------------------------------------

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self._kernels

    def __len__(self) -> int:
        return len(self._kernels)

    def list_kernel_ids(self) -> list[str]:
        return list(self._kernels)

    def get_kernel(self, kernel_id: str) -> KernelManager:
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise NoSuchKernel(kernel_id) from None

    def remove_kernel(self, kernel_id: str) -> KernelManager:
        """Forget a kernel without stopping it; returns its manager."""
        manager = self.get_kernel(kernel_id)
        del self._kernels[kernel_id]
        return manager

    # -- lifecycle by id ----------------------------------------------------------------

    async def start_kernel(
        self,
        type_id: str | None = None,
        *,
        kernel_id: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        launch_params: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Start a kernel (of the default type when None) and return its id once it answers.

        ``kernel_id`` lets the caller choose the id; one in use raises InvalidState.
        """
        if self._tasks is None:
            raise InvalidState("use 'async with MultiKernelManager()' before starting kernels")
        type_id = type_id or self.default_type_id or self.finder.default_type_id()
        if type_id is None:
            raise InvalidState("no kernel type given and none is installed")
        kernel_id = kernel_id or str(uuid.uuid4())
        if kernel_id in self._kernels:
            raise InvalidState(f"kernel id {kernel_id!r} is already in use")
        manager = KernelManager(
            type_id,
            finder=self.finder,
            kernel_id=kernel_id,
            cwd=cwd,
            launch_params=launch_params,
            env=env,
            **self.manager_options,
        )
        self._kernels[kernel_id] = manager  # claimed before the await: no duplicate ids
        try:
            await manager.start()
        except BaseException:
            self._kernels.pop(kernel_id, None)
            raise
        if self.restart:
            restarter = KernelRestarter(
                manager,
                restart_limit=self.restart_limit,
                on_died=self._on_died,
                on_restarted=self._on_restarted,
                on_failed=self._on_failed,
            )
            self._tasks.start_soon(restarter.run, name=f"restarter {kernel_id}")
        return kernel_id

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        """Stop a kernel for good and forget it."""
        manager = self.get_kernel(kernel_id)
        try:
            await manager.shutdown(now=now)
        finally:
            self._kernels.pop(kernel_id, None)

    async def restart_kernel(
        self, kernel_id: str, *, now: bool = False, newports: bool = False
    ) -> None:
        await self.get_kernel(kernel_id).restart(now=now, newports=newports)

    async def interrupt_kernel(self, kernel_id: str) -> None:
        await self.get_kernel(kernel_id).interrupt()

    def signal_kernel(self, kernel_id: str, signum: int) -> None:
        self.get_kernel(kernel_id).signal(signum)

    async def shutdown_all(self, *, now: bool = False) -> None:
        """Stop every kernel, in parallel."""
        async with anyio.create_task_group() as tg:
            for kernel_id in list(self._kernels):
                tg.start_soon(self._shutdown_quietly, kernel_id, now)

    async def _shutdown_quietly(self, kernel_id: str, now: bool) -> None:
        if kernel_id in self._kernels:
            await self.shutdown_kernel(kernel_id, now=now)

    # -- KernelBackend ----------------------------------------------------------------------

    def _model(self, kernel_id: str, manager: KernelManager) -> KernelModel:
        return KernelModel(id=kernel_id, name=manager.type_id, state=manager.state.value)

    async def list_kernels(self) -> list[KernelModel]:
        return [self._model(kid, km) for kid, km in self._kernels.items()]

    async def kernel_model(self, kernel_id: str) -> KernelModel:
        return self._model(kernel_id, self.get_kernel(kernel_id))

    @asynccontextmanager
    async def open_channels(
        self, kernel_id: str, *, session: str | None = None
    ) -> AsyncIterator[KernelChannels]:
        """A connection to every message channel of ``kernel_id`` for the block's duration."""
        async with (
            self.get_kernel(kernel_id).client(session=session, heartbeat=False) as client,
            client.subscribe() as messages,
        ):
            yield _ClientChannels(client, messages)
