"""BlockingKernelManager and BlockingMultiKernelManager: the managers, one blocking call each."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Self

from kernelyard.backend import KernelModel, KernelSpecs, Progress
from kernelyard.blocking.client import BlockingKernelClient
from kernelyard.blocking.portal import build, call, portal
from kernelyard.discovery import KernelFinder
from kernelyard.errors import KernelDied
from kernelyard.manager import KernelManager, KernelState, MultiKernelManager
from kernelyard.manager.restarter import RestartCallback
from kernelyard.provisioning import AttachInfo, LaunchOptions, Provisioner
from kernelyard.wire import ConnectionInfo

__all__ = ["BlockingKernelManager", "BlockingMultiKernelManager"]


class BlockingKernelManager:
    """A blocking KernelManager; see it for what each method does."""

    def __init__(
        self,
        type_id: str = "python3",
        *,
        finder: KernelFinder | None = None,
        kernel_id: str | None = None,
        options: LaunchOptions | None = None,
        provisioner: Provisioner | None = None,
    ) -> None:
        self.async_manager: KernelManager = build(
            partial(
                KernelManager,
                type_id,
                finder=finder,
                kernel_id=kernel_id,
                options=options,
                provisioner=provisioner,
            )
        )

    @classmethod
    def wrap(cls, manager: KernelManager) -> BlockingKernelManager:
        """A blocking face for an existing ``manager``."""
        self = cls.__new__(cls)
        self.async_manager = manager
        return self

    @property
    def kernel_id(self) -> str:
        return self.async_manager.kernel_id

    @property
    def state(self) -> KernelState:
        return self.async_manager.state

    @property
    def connection_info(self) -> ConnectionInfo | None:
        return self.async_manager.connection_info

    def is_alive(self) -> bool:
        return self.async_manager.is_alive()

    def client(
        self,
        *,
        session: str | None = None,
        username: str = "kernelyard",
        heartbeat: bool = True,
        heartbeat_interval: float = 0.5,
        time_to_dead: float = 3.0,
    ) -> BlockingKernelClient:
        """A blocking client that learns at once when the kernel dies or restarts."""
        return _client_of(
            self.async_manager, session, username, heartbeat, heartbeat_interval, time_to_dead
        )

    def start(self) -> None:
        return call(self.async_manager.start)

    def adopt(self, attach: AttachInfo) -> None:
        """Take over a running kernel (see KernelManager.adopt)."""
        return call(partial(self.async_manager.adopt, attach))

    def wait(self) -> int:
        return call(self.async_manager.wait)

    def shutdown(self, *, now: bool = False, reason: str = "shut down") -> None:
        return call(partial(self.async_manager.shutdown, now=now, reason=reason))

    def kill(self) -> None:
        return call(self.async_manager.kill)

    def restart(self, *, now: bool = False, newports: bool = False) -> None:
        return call(partial(self.async_manager.restart, now=now, newports=newports))

    def interrupt(self, *, timeout: float = 5.0) -> None:
        return call(partial(self.async_manager.interrupt, timeout=timeout))

    def signal(self, signum: int = signal.SIGINT) -> None:
        return build(partial(self.async_manager.signal, signum))

    def wait_for_change(self) -> KernelState:
        return call(self.async_manager.wait_for_change)

    def wait_for_death(self) -> KernelDied | None:
        return call(self.async_manager.wait_for_death)

    def cleanup(self) -> None:
        return build(self.async_manager.cleanup)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


class BlockingMultiKernelManager:
    """A blocking MultiKernelManager. Open on creation (its restarters run on the loop);
    close with :meth:`close` or use ``with``.
    """

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
        self.async_manager: MultiKernelManager = build(
            partial(
                MultiKernelManager,
                finder=finder,
                default_type_id=default_type_id,
                restart=restart,
                restart_limit=restart_limit,
                on_died=on_died,
                on_restarted=on_restarted,
                on_failed=on_failed,
                options=options,
                provisioner=provisioner,
            )
        )
        self._opened: AbstractContextManager[MultiKernelManager] | None = (
            portal().wrap_async_context_manager(self.async_manager)
        )
        self._opened.__enter__()

    def close(self) -> None:
        """Shut every kernel down and stop supervising (idempotent)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self.async_manager

    def __len__(self) -> int:
        return len(self.async_manager)

    def list_kernel_ids(self) -> list[str]:
        return self.async_manager.list_kernel_ids()

    def get_kernel(self, kernel_id: str) -> KernelManager:
        return self.async_manager.get_kernel(kernel_id)

    def client(
        self,
        kernel_id: str,
        *,
        session: str | None = None,
        username: str = "kernelyard",
        heartbeat: bool = True,
        heartbeat_interval: float = 0.5,
        time_to_dead: float = 3.0,
    ) -> BlockingKernelClient:
        """A blocking client of one of the kernels."""
        return _client_of(
            self.async_manager.get_kernel(kernel_id),
            session,
            username,
            heartbeat,
            heartbeat_interval,
            time_to_dead,
        )

    def remove_kernel(self, kernel_id: str) -> KernelManager:
        return self.async_manager.remove_kernel(kernel_id)

    def new_kernel_id(self) -> str:
        return self.async_manager.new_kernel_id()

    def start_kernel(
        self,
        type_id: str | None = None,
        *,
        kernel_id: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        launch_params: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        return call(
            partial(
                self.async_manager.start_kernel,
                type_id,
                kernel_id=kernel_id,
                cwd=cwd,
                launch_params=launch_params,
                env=env,
                progress=progress,
            )
        )

    def adopt_kernel(
        self,
        type_id: str,
        attach: AttachInfo,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Take over a running kernel (see MultiKernelManager.adopt_kernel)."""
        return call(partial(self.async_manager.adopt_kernel, type_id, attach, cwd=cwd, env=env))

    def warm_up(self, type_id: str | None = None, *, wait: bool = False) -> bool:
        """Start the fork server of ``type_id`` now (see MultiKernelManager.warm_up)."""
        return call(partial(self.async_manager.warm_up, type_id, wait=wait))

    def shutdown_kernel(
        self, kernel_id: str, *, now: bool = False, reason: str = "shut down"
    ) -> None:
        return call(partial(self.async_manager.shutdown_kernel, kernel_id, now=now, reason=reason))

    def restart_kernel(self, kernel_id: str, *, now: bool = False, newports: bool = False) -> None:
        return call(
            partial(self.async_manager.restart_kernel, kernel_id, now=now, newports=newports)
        )

    def interrupt_kernel(self, kernel_id: str) -> None:
        return call(partial(self.async_manager.interrupt_kernel, kernel_id))

    def signal_kernel(self, kernel_id: str, signum: int) -> None:
        return build(partial(self.async_manager.signal_kernel, kernel_id, signum))

    def shutdown_all(self, *, now: bool = False) -> None:
        return call(partial(self.async_manager.shutdown_all, now=now))

    def list_kernels(self) -> list[KernelModel]:
        return call(self.async_manager.list_kernels)

    def kernel_model(self, kernel_id: str) -> KernelModel:
        return call(partial(self.async_manager.kernel_model, kernel_id))

    def kernel_specs(self) -> KernelSpecs:
        """Every kernel type under its bare name (see MultiKernelManager.kernel_specs)."""
        return call(self.async_manager.kernel_specs)

    def kernel_spec_file(self, name: str, filename: str) -> bytes:
        """A kernelspec resource file; NoSuchKernelSpec if there is none."""
        return call(partial(self.async_manager.kernel_spec_file, name, filename))


def _client_of(
    manager: KernelManager,
    session: str | None,
    username: str,
    heartbeat: bool,
    heartbeat_interval: float,
    time_to_dead: float,
) -> BlockingKernelClient:
    make = partial(
        manager.client,
        session=session,
        username=username,
        heartbeat=heartbeat,
        heartbeat_interval=heartbeat_interval,
        time_to_dead=time_to_dead,
    )
    return BlockingKernelClient.wrap(build(make))
