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

A start answers at once: ``POST /api/kernels`` registers the kernel as
*starting* (counted against ``max_kernels`` from that moment) and returns its
model while the backend starts it in the server's task group; a WebSocket
opened meanwhile is accepted and waits for it (interrupt and restart answer
409 until it is up). A start that fails leaves the kernel listed as ``dead``
with the reason, as a kernel that died for good is: until it is deleted, or
culled when culling is on (dead kernels are culled at the first pass).
Starts are independent: nothing is locked across one, so a slow start (a
cluster queue) never delays another request. Only a backend whose kernels get
their ids elsewhere (a gateway's) is asked first, for the id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup

from kernelyard._clock import utcnow
from kernelyard.backend import KernelBackend, RemoteModels
from kernelyard.errors import (
    KernelyardError,
    NoSuchKernel,
    NoSuchKernelSpec,
    RequestRejected,
)
from kernelyard.lifecycle import KernelState
from kernelyard.server.activity import should_cull
from kernelyard.server.bridge import KernelBridge
from kernelyard.server.events import EventBus
from kernelyard.server.models import format_time
from kernelyard.server.policy import CloseCode, StartRequest, start_request
from kernelyard.server.served import ServedKernel
from kernelyard.server.settings import ServerSettings
from kernelyard.server.status import status_for
from kernelyard.wire import MessageFactory

__all__ = ["ServedKernel", "ServedKernels"]

log = logging.getLogger(__name__)

#: Lifecycle states after which a served kernel is forgotten.
_ENDED = frozenset({KernelState.SHUTTING_DOWN, KernelState.STOPPED})


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
        times = [kernel.last_activity for kernel in self._kernels.values()]
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
        """Start a kernel for a ``POST /api/kernels`` body; returns it, still starting,
        and whether it is new (an existing ``kernel_id`` is returned as it is).

        What the request names is checked here (400 for a bad body, 403 over
        ``max_kernels``, 404 for an unknown type); what happens after is the
        start's, and shows in the model.
        """
        request = start_request(body, self.settings.allowed_env)
        if request.kernel_id is not None and request.kernel_id in self._kernels:
            return self._kernels[request.kernel_id], False
        cwd = self.cwd_for(request.path)
        limit = self.settings.max_kernels
        if limit and self._holding() + self._starting >= limit:
            raise RequestRejected(403, f"Resource Limit: the server runs at most {limit} kernels")
        self._starting += 1  # held until the kernel is registered: counted atomically
        try:
            launch: StartRequest | None = request  # None once the backend started it
            # A backend from before new_kernel_id() names its kernels itself.
            new_id = getattr(self.backend, "new_kernel_id", lambda: None)
            kernel_id = request.kernel_id or new_id()
            name = await self._checked_name(request.name, strict=kernel_id is not None)
            if kernel_id is None:  # the backend names its kernels: ask it first
                kernel_id = await self.backend.start_kernel(name, cwd=cwd, env=request.env)
                launch = None
            if kernel_id in self._kernels:  # a racing start with the same id
                return self._kernels[kernel_id], False
            kernel = ServedKernel(kernel_id, name)
            self._kernels[kernel_id] = kernel
        except KernelyardError as exc:
            self._action(
                "start", body.get("kernel_id") or "", "", f"Kernel failed to start: {exc}", exc
            )
            raise
        finally:
            self._starting -= 1
        assert self._tasks is not None
        self._tasks.start_soon(self._run, kernel, launch, cwd, name=f"kernel {kernel_id}")
        return kernel, True

    def _holding(self) -> int:
        """The kernels that count against ``max_kernels``: starting or started."""
        return sum(1 for kernel in self._kernels.values() if not kernel.failure)

    async def _checked_name(self, name: str | None, *, strict: bool) -> str:
        """The kernel type to start: ``name``, or the default (the configured one when
        the backend has it, else the backend's: a gateway's replaces ours). With
        ``strict``, NoSuchKernelSpec when the backend does not list it (else the
        backend's start says so: a gateway's list may be older than the gateway).
        """
        if name is not None and not strict:
            return name
        try:
            specs = await self.backend.kernel_specs()
        except KernelyardError:
            return name or self.settings.default_kernel  # the start reports what is wrong
        if name is None:
            name = self.settings.default_kernel
            if name not in specs.specs and specs.default is not None:
                name = specs.default
        if strict and name not in specs.specs:
            raise NoSuchKernelSpec(name)
        return name

    async def _run(self, kernel: ServedKernel, request: StartRequest | None, cwd: str) -> None:
        """Start the kernel (unless the backend already did: ``request`` None), then own
        its channels and bridge for as long as it runs.
        """
        launched = request is None  # the backend holds the kernel from then on
        try:
            with kernel.start_scope:  # what a DELETE before the kernel answered cancels
                if request is not None:
                    await self.backend.start_kernel(
                        kernel.name,
                        kernel_id=kernel.id,
                        cwd=cwd,
                        env=request.env,
                        progress=lambda text: setattr(kernel, "progress", text),
                    )
                    launched = True
                kernel.cull_idle_timeout = await self._cull_override(kernel.name)
            if not kernel.start_scope.cancelled_caught:
                await self._serve(kernel)
        except KernelyardError as exc:
            self._failed(kernel, str(exc), exc)
        except Exception as exc:  # one kernel's failure must not take the server down
            log.exception("kernel %s: the start failed", kernel.id)
            self._failed(kernel, f"{type(exc).__name__}: {exc}", exc)
        finally:
            if not kernel.settled.is_set():  # cancelled: deleted, or the server stops
                kernel.failure = kernel.stop_reason or "shut down while starting"
                kernel.settled.set()
            if launched and kernel.bridge is None and not kernel.stop_reason:
                # Started, but it cannot be served (its channels failed): nothing may
                # run that nobody can reach.
                with anyio.CancelScope(shield=True):
                    try:
                        await self.backend.shutdown_kernel(kernel.id, now=True)
                    except KernelyardError as exc:
                        log.warning("kernel %s could not be stopped: %s", kernel.id, exc)

    def _failed(self, kernel: ServedKernel, reason: str, error: BaseException) -> None:
        if kernel.settled.is_set():  # it ran and its bridge failed: the bridge told them
            return
        kernel.failure = reason or "the kernel did not start"
        kernel.settled.set()
        log.warning("kernel %s (%s) failed to start: %s", kernel.id, kernel.name, reason)
        self._action("start", kernel.id, kernel.name, f"Kernel failed to start: {reason}", error)

    async def _serve(self, kernel: ServedKernel) -> None:
        """Own the kernel's channels and bridge for as long as the kernel runs."""
        kernel_id = kernel.id
        async with self.backend.open_channels(kernel_id) as channels:
            bridge = KernelBridge(kernel_id, channels, self.settings, factory=self.factory)
            if bridge.activity.execution_state == "starting":
                bridge.activity.execution_state = "idle"  # it answered kernel_info: it is idle
            kernel.bridge, kernel.progress = bridge, ""
            kernel.settled.set()
            self._action("start", kernel_id, kernel.name, "Kernel started")
            try:
                await bridge.run()
            except Exception:  # one kernel's failure must not take the server down
                log.exception("kernel %s: the bridge failed", kernel_id)
                bridge.close(CloseCode.FINAL, "the server lost the kernel's channels")
            if bridge.lifecycle.state in _ENDED and self._kernels.get(kernel_id) is kernel:
                # Shut down behind our back (culled on a gateway): forget it as a
                # DELETE would, once its connections were told.
                del self._kernels[kernel_id]
                self._action(
                    "shutdown", kernel_id, kernel.name, f"Kernel {bridge.lifecycle.reason}"
                )

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
        """Stop a kernel for good; its connections get ``status: dead`` and close 1000.
        One still starting has its start cancelled (what the backend launched is stopped).
        """
        kernel = self.get(kernel_id)
        reason = "culled" if action == "cull" else "shut down"
        try:
            if not kernel.settled.is_set():
                kernel.stop_reason = f"{reason} while starting"  # what waiting sockets hear
                kernel.start_scope.cancel()
                await kernel.settled.wait()  # its channels may have opened meanwhile
            await self.backend.shutdown_kernel(kernel_id, now=now, reason=reason)
        except NoSuchKernel:
            pass  # its start failed or was cancelled there: nothing is left to stop
        finally:
            self._kernels.pop(kernel_id, None)
        self._action(action, kernel_id, kernel.name, f"Kernel {action}")

    async def restart(self, kernel_id: str) -> ServedKernel:
        """Restart a kernel; InvalidState (409) while it starts or if its start failed."""
        kernel = self.get(kernel_id)
        try:
            kernel.started()
            with anyio.fail_after(self.settings.kernel_info_timeout):
                await self.backend.restart_kernel(kernel_id)
        except (KernelyardError, TimeoutError) as exc:
            message = f"Kernel restart failed: {exc or 'it did not answer in time'}"
            self._action("restart", kernel_id, kernel.name, message, exc)
            raise
        self._action("restart", kernel_id, kernel.name, "Kernel restarted")
        return kernel

    async def interrupt(self, kernel_id: str) -> None:
        """Interrupt a kernel; InvalidState (409) while it starts (nothing runs yet: an
        interrupt held until then would hit the first cell) or if its start failed.
        """
        kernel = self.get(kernel_id)
        try:
            kernel.started()
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
            if kernel.bridge is not None:
                kernel.bridge.close(CloseCode.SERVER_STOPPING, "the server is stopping")
            else:
                kernel.closing = (CloseCode.SERVER_STOPPING, "the server is stopping")
                kernel.closed.set()

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
            if not kernel.settled.is_set():
                continue  # starting: not idle, and a queue wait is not inactivity
            timeout = kernel.cull_idle_timeout
            if should_cull(
                kernel.execution_state,
                kernel.last_activity,
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
                    kernel.execution_state,
                    format_time(kernel.last_activity),
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
