"""MultiKernelManager: many kernels by id, each supervised by its own restarter.

Starts are independent: each awaits only its own kernel, so a slow or failing
start never delays another (no global lock, and ports cannot collide; see
:mod:`kernelyard.provisioning.ports`). ``shutdown_all`` stops kernels in
parallel. It implements :class:`~kernelyard.backend.KernelBackend`.

Kernelspecs that preload (``metadata.kernelyard.preload``, as ours does) are
forked from a fork server the manager owns (``LaunchOptions(fork=False)``
spawns every kernel); :meth:`warm_up` starts that server before the first
kernel. Another :class:`~kernelyard.provisioning.Provisioner` can be given
instead of the local one.

Use it as an async context manager; the restarters live in its task group::

    async with MultiKernelManager() as kernels:
        kernel_id = await kernels.start_kernel("python3")
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from kernelyard.backend import KernelChannels, KernelModel, KernelSpecs, Progress
from kernelyard.discovery import KernelFinder, KernelSpec
from kernelyard.errors import InvalidState, KernelyardError, NoSuchKernel, NoSuchKernelSpec
from kernelyard.manager.channels import ManagedChannels
from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.restarter import KernelRestarter, RestartCallback
from kernelyard.provisioning import (
    AttachInfo,
    ForkServerProvisioner,
    ForkServers,
    LaunchOptions,
    Provisioner,
    SubprocessProvisioner,
)

__all__ = ["MultiKernelManager"]


class MultiKernelManager:
    """Kernels by id. ``options`` are every kernel's (a start adds its cwd and env)."""

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
        options: LaunchOptions | None = None,
        provisioner: Provisioner | None = None,
    ) -> None:
        self.finder = finder or KernelFinder.default()
        self.default_type_id = default_type_id
        self.restart = restart
        self.restart_limit = restart_limit
        self._on_died, self._on_restarted, self._on_failed = on_died, on_restarted, on_failed
        self.options = options or LaunchOptions()
        self._kernels: dict[str, KernelManager] = {}
        self._tasks: TaskGroup | None = None
        self._provisioner = provisioner
        self._forks: ForkServers | None = None

    # -- lifetime ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tasks is not None:
            raise InvalidState("the MultiKernelManager is already open")
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        if self._provisioner is None:
            if self.options.fork:
                self._forks = ForkServers()
                self._provisioner = ForkServerProvisioner(self._forks, self.finder.runtime_dir)
            else:
                self._provisioner = SubprocessProvisioner(self.finder.runtime_dir)
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
                try:
                    await self.shutdown_all()
                finally:  # a failed shutdown must not leave the zygotes running
                    if self._forks is not None:
                        await self._forks.aclose()
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

    def new_kernel_id(self) -> str:
        """A fresh id (a UUID, as jupyter_client's) for :meth:`start_kernel`."""
        return str(uuid.uuid4())

    async def start_kernel(
        self,
        type_id: str | None = None,
        *,
        kernel_id: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        launch_params: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Start a kernel (of the default type when None) and return its id once it answers.

        ``kernel_id`` lets the caller choose the id; one in use raises InvalidState.
        ``env`` is added to the kernel's environment, ``launch_params`` fill its argv;
        ``progress`` hears what the provisioner waits for (a cluster queue).
        """
        if self._tasks is None:
            raise InvalidState("use 'async with MultiKernelManager()' before starting kernels")
        type_id = type_id or self.default_type_id or self.finder.default_type_id()
        if type_id is None:
            raise InvalidState("no kernel type given and none is installed")
        kernel_id = kernel_id or self.new_kernel_id()
        if kernel_id in self._kernels:
            raise InvalidState(f"kernel id {kernel_id!r} is already in use")
        options = replace(
            self.options,
            cwd=cwd if cwd is not None else self.options.cwd,
            launch_params={**self.options.launch_params, **(launch_params or {})},
            extra_env={**self.options.extra_env, **(env or {})},
            progress=progress or self.options.progress,
        )
        manager = self._manager(type_id, kernel_id, options)
        return await self._hold(manager, manager.start)

    async def adopt_kernel(
        self,
        type_id: str,
        attach: AttachInfo,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Take over the running kernel ``attach`` names (launched with ``persist`` by a
        manager that is gone), under its own id, supervised from then on as if started
        here; returns the id. Its restarts launch with ``persist`` again, in ``cwd``
        with ``env`` (what its first start was given). InvalidState if the id is in
        use; LaunchError if it cannot be adopted (see KernelManager.adopt).
        """
        if self._tasks is None:
            raise InvalidState("use 'async with MultiKernelManager()' before adopting kernels")
        kernel_id = attach.kernel_id
        if kernel_id in self._kernels:
            raise InvalidState(f"kernel id {kernel_id!r} is already in use")
        options = replace(
            self.options,
            cwd=cwd if cwd is not None else self.options.cwd,
            extra_env={**self.options.extra_env, **(env or {})},
            persist=True,
        )
        manager = self._manager(type_id, kernel_id, options)
        return await self._hold(manager, partial(manager.adopt, attach))

    def _manager(self, type_id: str, kernel_id: str, options: LaunchOptions) -> KernelManager:
        return KernelManager(
            type_id,
            finder=self.finder,
            kernel_id=kernel_id,
            options=options,
            provisioner=self._provisioner,
        )

    async def _hold(self, manager: KernelManager, begin: Callable[[], Awaitable[None]]) -> str:
        """Claim the kernel's id, ``begin`` (start or adopt), then supervise it; the id
        is given back if ``begin`` fails.
        """
        assert self._tasks is not None
        kernel_id = manager.kernel_id
        self._kernels[kernel_id] = manager  # claimed before the await: no duplicate ids
        try:
            await begin()
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
            # Supervised from now on, not from when the task first runs: a death in
            # between is one the restarter will undo, not a final one.
            manager.lifecycle.supervise(True)
            self._tasks.start_soon(restarter.run, name=f"restarter {kernel_id}")
        return kernel_id

    async def warm_up(self, type_id: str | None = None, *, wait: bool = False) -> bool:
        """Start the fork server of ``type_id`` (the default type when None) now, so that
        even the first kernel of that type is forked; with ``wait``, return once it has
        preloaded. Returns whether kernels of that type are forked now: False for a type
        that does not preload, or without a fork server. An unknown type raises
        NoSuchKernelSpec.
        """
        if self._forks is None or self.options.persist:  # persistent kernels are spawned
            return False
        type_id = type_id or self.default_type_id or self.finder.default_type_id()
        if type_id is None:
            return False
        spec = self.finder.get_spec(type_id).launch_spec()
        return await self._forks.prepare(spec, env=self.options.environment(), wait=wait)

    async def shutdown_kernel(
        self, kernel_id: str, *, now: bool = False, reason: str = "shut down"
    ) -> None:
        """Stop a kernel for good and forget it (``reason`` goes with its lifecycle events)."""
        manager = self.get_kernel(kernel_id)
        try:
            await manager.shutdown(now=now, reason=reason)
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
        lifecycle = manager.lifecycle
        return KernelModel(kernel_id, manager.type_id, lifecycle.state, lifecycle.reason)

    async def kernel_specs(self) -> KernelSpecs:
        """Every kernel type under its bare name (see :meth:`KernelFinder.short_names`).

        Specs that fail to load are skipped (and logged by the finder).
        """
        specs: dict[str, KernelSpec] = {}
        for name, type_id in (await anyio.to_thread.run_sync(self.finder.short_names)).items():
            try:
                specs[name] = self.finder.get_spec(type_id)
            except KernelyardError:
                continue
        default = self.default_type_id or self.finder.default_type_id()
        if default is not None and default not in specs:
            default = default.rpartition("/")[2]
        return KernelSpecs(specs, default if default in specs else next(iter(specs), None))

    async def kernel_spec_file(self, name: str, filename: str) -> bytes:
        """A resource file (logo, kernel.js) of kernel type ``name``.

        NoSuchKernelSpec when the type or the file does not exist (no path may
        leave the resource directory).
        """
        path = self.finder.get_spec(name).resource_path(filename)
        try:
            return await anyio.Path(path).read_bytes()
        except OSError:
            raise NoSuchKernelSpec(f"{name}/{filename}") from None

    async def list_kernels(self) -> list[KernelModel]:
        return [self._model(kid, km) for kid, km in self._kernels.items()]

    async def kernel_model(self, kernel_id: str) -> KernelModel:
        return self._model(kernel_id, self.get_kernel(kernel_id))

    @asynccontextmanager
    async def open_channels(self, kernel_id: str) -> AsyncIterator[KernelChannels]:
        """Raw-part channels of ``kernel_id`` (see :class:`ManagedChannels`) for the block."""
        manager = self.get_kernel(kernel_id)
        async with ManagedChannels(manager) as channels:
            yield channels
