"""ServedKernels: the kernels the server runs, with what the REST API shows of them.

It sits on a :class:`~kernelyard.backend.KernelBackend` and adds, per kernel,
a :class:`~kernelyard.server.bridge.KernelBridge` (the shared channels, the
replay log, activity, the lifecycle mirror), the start policies
(``max_kernels`` counted with the starts in flight, the env allow-list, the
path under the root dir) and kernel action events. The culler runs here too,
and, for a backend whose kernels live elsewhere (:class:`~kernelyard.backend.RemoteModels`,
a gateway), the refresh that merges their remote models into ours: the later
of both ``last_activity`` values (other clients use the kernel there too), and
the connections the remote counts besides our own upstream one.

Starts are independent: nothing is locked across a start, so a slow start
never delays another request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from kernelyard._clock import utcnow
from kernelyard.backend import KernelBackend, KernelModel, RemoteModels
from kernelyard.errors import KernelyardError, NoSuchKernel, RequestRejected
from kernelyard.lifecycle import KernelState
from kernelyard.server.activity import should_cull
from kernelyard.server.bridge import KernelBridge
from kernelyard.server.events import EventBus
from kernelyard.server.models import format_time
from kernelyard.server.policy import CloseCode, start_request
from kernelyard.server.settings import ServerSettings
from kernelyard.server.status import status_for
from kernelyard.wire import MessageFactory

__all__ = ["ServedKernel", "ServedKernels"]

log = logging.getLogger(__name__)

#: Lifecycle states after which a served kernel is forgotten.
_ENDED = frozenset({KernelState.SHUTTING_DOWN, KernelState.STOPPED})


@dataclass(eq=False)
class ServedKernel:
    """One kernel as the server tracks it."""

    id: str
    name: str
    bridge: KernelBridge
    cull_idle_timeout: float | None = None  # the kernelspec's override, if any
    #: Connections the remote side counts besides ours (a gateway's other clients).
    remote_connections: int = 0

    @property
    def connections(self) -> int:
        return self.bridge.connections + self.remote_connections

    def merge_remote(self, remote: KernelModel) -> None:
        """Take in what the remote side knows: its later activity, its other clients
        (``remote.connections`` counts those only: see RemoteModels.refresh).
        """
        activity = self.bridge.activity
        if remote.last_activity is not None and remote.last_activity > activity.last_activity:
            activity.last_activity = remote.last_activity
        self.remote_connections = remote.connections

    def model(self) -> dict[str, Any]:
        """The REST kernel model (state and reason come from the kernel's lifecycle)."""
        bridge = self.bridge
        model: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "last_activity": format_time(bridge.activity.last_activity),
            "execution_state": bridge.execution_state,
            "connections": self.connections,
        }
        if bridge.reason:
            model["reason"] = bridge.reason
        # Not in jupyter_server's model (clients ignore it); a backend's channels from
        # before KernelChannels.encrypted existed do not say.
        encrypted = getattr(bridge.channels, "encrypted", None)
        if encrypted is not None:
            model["encrypted"] = encrypted
        return model


class ServedKernels:
    """The server's kernels. Use as ``async with``; leaving it shuts every kernel down."""

    def __init__(self, backend: KernelBackend, settings: ServerSettings, events: EventBus) -> None:
        self.backend = backend
        self.settings = settings
        self.events = events
        self.root_dir = Path(settings.root_dir).resolve()
        self.factory = MessageFactory(username="kernelyard", clock=utcnow)
        self._kernels: dict[str, ServedKernel] = {}
        self._starting = 0
        self._tasks: TaskGroup | None = None
        self.started = utcnow()

    async def __aenter__(self) -> Self:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        if self.settings.cull_idle_timeout > 0:
            self._tasks.start_soon(self._cull_forever, name="culler")
        backend = self.backend
        if isinstance(backend, RemoteModels) and backend.refresh_interval > 0:
            self._tasks.start_soon(self._refresh_forever, backend, name="refresh")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.shutdown_timeout):
            await self.shutdown_all()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(exc_type, exc, tb)

    # -- lookup ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._kernels)

    def get(self, kernel_id: str) -> ServedKernel:
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise NoSuchKernel(kernel_id) from None

    def models(self) -> list[dict[str, Any]]:
        return [kernel.model() for kernel in list(self._kernels.values())]

    @property
    def connections(self) -> int:
        return sum(k.connections for k in self._kernels.values())

    @property
    def last_activity(self) -> datetime:
        times = [k.bridge.activity.last_activity for k in self._kernels.values()]
        return max(times, default=self.started)

    # -- start --------------------------------------------------------------------------

    def cwd_for(self, path: str | None) -> str:
        """The directory a kernel for API path ``path`` runs in (under the root dir)."""
        if not path:
            return str(self.root_dir)
        try:
            candidate = (self.root_dir / path.lstrip("/")).resolve()
        except (ValueError, OSError) as exc:  # a NUL byte, a symlink loop
            raise RequestRejected(400, f"path {path!r} cannot be used: {exc}") from None
        if not candidate.is_relative_to(self.root_dir):
            raise RequestRejected(400, f"path {path!r} is outside the server's root directory")
        while not candidate.is_dir() and candidate != self.root_dir:
            candidate = candidate.parent
        return str(candidate)

    async def start(self, body: Mapping[str, Any]) -> tuple[ServedKernel, bool]:
        """Start a kernel for a ``POST /api/kernels`` body; returns it and whether it is
        new (an existing ``kernel_id`` is returned as it is).
        """
        request = start_request(body, self.settings.allowed_env)
        if request.kernel_id is not None and request.kernel_id in self._kernels:
            return self._kernels[request.kernel_id], False
        name = request.name or self.settings.default_kernel
        cwd = self.cwd_for(request.path)
        limit = self.settings.max_kernels
        if limit and len(self._kernels) + self._starting >= limit:
            raise RequestRejected(403, f"Resource Limit: the server runs at most {limit} kernels")
        self._starting += 1
        try:
            if request.name is None:
                name = await self._default_name(name)
            # The backend chooses the id unless the client did: a gateway's kernels
            # get theirs from the gateway.
            kid = await self.backend.start_kernel(
                name, kernel_id=request.kernel_id, cwd=cwd, env=request.env
            )
            assert self._tasks is not None
            kernel: ServedKernel = await self._tasks.start(self._serve, kid, name)
        except KernelyardError as exc:
            failed = request.kernel_id or ""
            self._action("start", failed, name, f"Kernel failed to start: {exc}", exc)
            raise
        finally:
            self._starting -= 1
        self._action("start", kid, name, "Kernel started")
        return kernel, True

    async def _default_name(self, configured: str) -> str:
        """The kernel type a start that names none gets: the configured default when the
        backend has it, else the backend's own (a gateway's default replaces ours).
        """
        try:
            specs = await self.backend.kernel_specs()
        except KernelyardError:
            return configured  # the start itself reports what is wrong
        if configured in specs.specs or specs.default is None:
            return configured
        return specs.default

    async def _serve(
        self, kernel_id: str, name: str, *, task_status: TaskStatus[ServedKernel]
    ) -> None:
        """Own the kernel's channels and bridge for as long as the kernel runs."""
        async with self.backend.open_channels(kernel_id) as channels:
            bridge = KernelBridge(kernel_id, channels, self.settings, factory=self.factory)
            if bridge.activity.execution_state == "starting":
                bridge.activity.execution_state = "idle"  # it answered kernel_info: it is idle
            kernel = ServedKernel(kernel_id, name, bridge, await self._cull_override(name))
            self._kernels[kernel_id] = kernel
            task_status.started(kernel)
            try:
                await bridge.run()
            except Exception:  # one kernel's failure must not take the server down
                log.exception("kernel %s: the bridge failed", kernel_id)
                bridge.close(CloseCode.FINAL, "the server lost the kernel's channels")
            if bridge.lifecycle.state in _ENDED and self._kernels.get(kernel_id) is kernel:
                # Shut down behind our back (culled on a gateway): forget it as a
                # DELETE would, once its connections were told.
                del self._kernels[kernel_id]
                self._action("shutdown", kernel_id, name, f"Kernel {bridge.lifecycle.reason}")

    async def _cull_override(self, name: str) -> float | None:
        """The kernelspec's ``metadata.cull_idle_timeout``, if it sets one."""
        try:
            spec = (await self.backend.kernel_specs()).specs.get(name)
        except KernelyardError:
            return None
        value = spec.metadata.get("cull_idle_timeout") if spec is not None else None
        return float(value) if isinstance(value, int | float) else None

    # -- control --------------------------------------------------------------------------

    async def shutdown(
        self, kernel_id: str, *, action: str = "shutdown", now: bool = False
    ) -> None:
        """Stop a kernel for good; its connections get ``status: dead`` and close 1000."""
        kernel = self.get(kernel_id)
        reason = "culled" if action == "cull" else "shut down"
        try:
            await self.backend.shutdown_kernel(kernel_id, now=now, reason=reason)
        except NoSuchKernel:
            pass
        finally:
            self._kernels.pop(kernel_id, None)
        self._action(action, kernel_id, kernel.name, f"Kernel {action}")

    async def restart(self, kernel_id: str) -> ServedKernel:
        kernel = self.get(kernel_id)
        try:
            with anyio.fail_after(self.settings.kernel_info_timeout):
                await self.backend.restart_kernel(kernel_id)
        except (KernelyardError, TimeoutError) as exc:
            message = f"Kernel restart failed: {exc or 'it did not answer in time'}"
            self._action("restart", kernel_id, kernel.name, message, exc)
            raise
        self._action("restart", kernel_id, kernel.name, "Kernel restarted")
        return kernel

    async def interrupt(self, kernel_id: str) -> None:
        kernel = self.get(kernel_id)
        try:
            await self.backend.interrupt_kernel(kernel_id)
        except KernelyardError as exc:
            self._action("interrupt", kernel_id, kernel.name, f"Interrupt failed: {exc}", exc)
            raise
        self._action("interrupt", kernel_id, kernel.name, "Kernel interrupted")

    def _action(
        self, action: str, kernel_id: str, name: str, msg: str, error: BaseException | None = None
    ) -> None:
        status = None if error is None else status_for(error)[0]
        self.events.kernel_action(action, kernel_id, name, msg=msg, status_code=status)

    def close_connections(self) -> None:
        """Tell every connection the server is stopping (close code 1001)."""
        for kernel in self._kernels.values():
            kernel.bridge.close(CloseCode.SERVER_STOPPING, "the server is stopping")

    async def shutdown_all(self) -> None:
        """Stop every kernel in parallel (server exit): connections close with 1001."""
        self.close_connections()
        async with anyio.create_task_group() as tg:
            for kernel_id in list(self._kernels):
                tg.start_soon(self._shutdown_quietly, kernel_id)

    async def _shutdown_quietly(self, kernel_id: str) -> None:
        try:
            await self.shutdown(kernel_id, now=False)
        except KernelyardError as exc:
            log.warning("kernel %s did not shut down cleanly: %s", kernel_id, exc)

    # -- remote models ---------------------------------------------------------------------

    async def _refresh_forever(self, backend: RemoteModels) -> None:
        while True:
            await anyio.sleep(backend.refresh_interval)
            try:
                await self.refresh_once(backend)
            except KernelyardError as exc:  # the gateway is away: the models stay as they are
                log.warning("could not refresh the remote kernel models: %s", exc)
            except Exception:  # a gateway's odd answer must not take the server down
                log.exception("refreshing the remote kernel models failed")

    async def refresh_once(self, backend: RemoteModels) -> None:
        """Merge the remote models into ours once (kernels gone there end on their own:
        the backend gave them SHUTDOWN, and their bridges forget them).
        """
        for remote in await backend.refresh():
            kernel = self._kernels.get(remote.id)
            if kernel is not None:
                kernel.merge_remote(remote)

    # -- culling ---------------------------------------------------------------------------

    async def _cull_forever(self) -> None:
        while True:
            await anyio.sleep(self.settings.cull_interval)
            await self.cull_once()

    async def cull_once(self) -> list[str]:
        """One culling pass; returns the ids it culled."""
        now, settings, culled = utcnow(), self.settings, []
        for kernel in list(self._kernels.values()):
            timeout = kernel.cull_idle_timeout
            bridge = kernel.bridge
            if should_cull(
                bridge.execution_state,
                bridge.activity.last_activity,
                now=now,
                idle_timeout=settings.cull_idle_timeout if timeout is None else timeout,
                connections=kernel.connections,
                cull_busy=settings.cull_busy,
                cull_connected=settings.cull_connected,
            ):
                log.warning(
                    "culling kernel %s (%s): %s since %s",
                    kernel.id,
                    kernel.name,
                    bridge.execution_state,
                    format_time(bridge.activity.last_activity),
                )
                culled.append(kernel.id)
        async with anyio.create_task_group() as tg:
            for kernel_id in culled:
                tg.start_soon(self._cull, kernel_id)
        return culled

    async def _cull(self, kernel_id: str) -> None:
        try:
            await self.shutdown(kernel_id, action="cull")
        except KernelyardError as exc:
            log.warning("culling kernel %s failed: %s", kernel_id, exc)
