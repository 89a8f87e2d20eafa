"""ServedKernels: the kernels the server runs, with what the REST API shows of them.

It sits on a :class:`~kernelyard.backend.KernelBackend` and adds, per kernel,
a :class:`~kernelyard.server.bridge.KernelBridge` (the shared channels, the
replay log, activity), the ``reason`` of a failure, the start/stop policies
(``max_kernels`` counted with the starts in flight, the env allow-list, the
path under the root dir) and kernel action events. The culler runs here too.

Starts are independent: nothing is locked across a start, so a slow start
never delays another request.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from kernelyard.backend import KernelBackend
from kernelyard.errors import KernelyardError, NoSuchKernel, RequestRejected
from kernelyard.server.activity import should_cull
from kernelyard.server.bridge import KernelBridge
from kernelyard.server.events import EventBus
from kernelyard.server.settings import ServerSettings
from kernelyard.server.status import status_for
from kernelyard.server.websocket import CLOSE_FINAL, CLOSE_SERVER_STOPPING
from kernelyard.wire import MessageFactory

__all__ = ["ServedKernel", "ServedKernels", "format_time"]

log = logging.getLogger(__name__)

#: jupyter_server's kernel id route pattern.
KERNEL_ID = re.compile(r"^\w+-\w+-\w+-\w+-\w+$")


def format_time(when: datetime) -> str:
    """ISO 8601 in UTC, always with six fractional digits and a ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class ServedKernel:
    """One kernel as the server tracks it."""

    id: str
    name: str
    bridge: KernelBridge
    reason: str = ""
    cull_idle_timeout: float | None = None  # the kernelspec's override, if any

    def model(self) -> dict[str, Any]:
        """The REST kernel model."""
        model: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "last_activity": format_time(self.bridge.activity.last_activity),
            "execution_state": self.bridge.activity.execution_state,
            "connections": self.bridge.connections,
        }
        if self.reason:
            model["reason"] = self.reason
        return model


class ServedKernels:
    """The server's kernels. Use as ``async with``; leaving it shuts every kernel down."""

    def __init__(self, backend: KernelBackend, settings: ServerSettings, events: EventBus) -> None:
        self.backend = backend
        self.settings = settings
        self.events = events
        self.root_dir = Path(settings.root_dir).resolve()
        self.factory = MessageFactory(username="kernelyard", clock=_utcnow)
        self._kernels: dict[str, ServedKernel] = {}
        self._starting = 0
        self._tasks: TaskGroup | None = None
        self.started = _utcnow()

    async def __aenter__(self) -> Self:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        if self.settings.cull_idle_timeout > 0:
            self._tasks.start_soon(self._cull_forever, name="culler")
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
        return sum(k.bridge.connections for k in self._kernels.values())

    @property
    def last_activity(self) -> datetime:
        times = [k.bridge.activity.last_activity for k in self._kernels.values()]
        return max(times, default=self.started)

    # -- start --------------------------------------------------------------------------

    def cwd_for(self, path: object) -> str:
        """The directory a kernel for API path ``path`` runs in (under the root dir)."""
        if path is None or path == "":
            return str(self.root_dir)
        if not isinstance(path, str):
            raise RequestRejected(400, "'path' must be a string")
        try:
            candidate = (self.root_dir / path.lstrip("/")).resolve()
        except (ValueError, OSError) as exc:  # a NUL byte, a symlink loop
            raise RequestRejected(400, f"path {path!r} cannot be used: {exc}") from None
        if not candidate.is_relative_to(self.root_dir):
            raise RequestRejected(400, f"path {path!r} is outside the server's root directory")
        while not candidate.is_dir() and candidate != self.root_dir:
            candidate = candidate.parent
        return str(candidate)

    def allowed_env(self, env: object) -> dict[str, str]:
        """The part of a client's ``env`` the server passes on (KERNEL_* and allowed names)."""
        if env is None:
            return {}
        if not isinstance(env, Mapping):
            raise RequestRejected(400, "'env' must be an object of strings")
        kept: dict[str, str] = {}
        for name, value in env.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise RequestRejected(400, f"env value of {name!r} must be a string")
            if name.startswith("KERNEL_") or name in self.settings.allowed_env:
                kept[name] = value
        if len(kept) < len(env):
            log.debug("ignored %d env names outside the allow-list", len(env) - len(kept))
        return kept

    async def start(
        self,
        name: str | None,
        *,
        kernel_id: str | None = None,
        path: object = None,
        env: object = None,
    ) -> tuple[ServedKernel, bool]:
        """Start a kernel; returns it and whether it is new (an existing id is returned as is)."""
        if kernel_id is not None:
            if not isinstance(kernel_id, str) or not KERNEL_ID.match(kernel_id):
                raise RequestRejected(400, f"kernel_id {kernel_id!r} is not a UUID")
            if kernel_id in self._kernels:
                return self._kernels[kernel_id], False
        if name is not None and not isinstance(name, str):
            raise RequestRejected(400, "'name' must be a string")
        name = name or self.settings.default_kernel
        cwd, kernel_env = self.cwd_for(path), self.allowed_env(env)
        limit = self.settings.max_kernels
        if limit and len(self._kernels) + self._starting >= limit:
            raise RequestRejected(403, f"Resource Limit: the server runs at most {limit} kernels")
        kernel_id = kernel_id or str(uuid.uuid4())
        self._starting += 1
        try:
            kid = await self.backend.start_kernel(
                name, kernel_id=kernel_id, cwd=cwd, env=kernel_env
            )
            assert self._tasks is not None
            kernel: ServedKernel = await self._tasks.start(self._serve, kid, name)
        except KernelyardError as exc:
            self.events.kernel_action(
                "start",
                kernel_id,
                name,
                msg=f"Kernel failed to start: {exc}",
                status_code=status_for(exc)[0],
            )
            raise
        finally:
            self._starting -= 1
        self.events.kernel_action("start", kid, name, msg="Kernel started")
        return kernel, True

    async def _serve(
        self, kernel_id: str, name: str, *, task_status: TaskStatus[ServedKernel]
    ) -> None:
        """Own the kernel's channels and bridge for as long as the kernel runs."""
        async with self.backend.open_channels(kernel_id) as channels:
            bridge = KernelBridge(
                kernel_id,
                channels,
                self.settings,
                factory=self.factory,
                on_dead=lambda reason: self._died(kernel_id, reason),
            )
            if bridge.activity.execution_state == "starting":
                bridge.activity.execution_state = "idle"  # it answered kernel_info: it is idle
            kernel = ServedKernel(kernel_id, name, bridge)
            kernel.cull_idle_timeout = await self._cull_override(name)
            self._kernels[kernel_id] = kernel
            task_status.started(kernel)
            try:
                await bridge.run()
            except Exception:  # one kernel's failure must not take the server down
                log.exception("kernel %s: the bridge failed", kernel_id)
                bridge.close(CLOSE_FINAL, "the server lost the kernel's channels")

    async def _cull_override(self, name: str) -> float | None:
        try:
            specs = await self.backend.kernel_specs(self.settings.base_url)
            value = specs["kernelspecs"][name]["spec"]["metadata"].get("cull_idle_timeout")
        except (KernelyardError, KeyError, TypeError, AttributeError):
            return None
        return float(value) if isinstance(value, int | float) else None

    def _died(self, kernel_id: str, reason: str) -> None:
        kernel = self._kernels.get(kernel_id)
        if kernel is not None:
            kernel.reason = reason
            kernel.bridge.close(CLOSE_FINAL, "the kernel died")

    # -- control --------------------------------------------------------------------------

    async def shutdown(
        self, kernel_id: str, *, action: str = "shutdown", now: bool = False
    ) -> None:
        """Stop a kernel for good; its connections get ``status: dead`` and close 1000."""
        kernel = self.get(kernel_id)
        kernel.bridge.inject_status("dead")
        why = "the kernel was culled" if action == "cull" else "the kernel was shut down"
        kernel.bridge.close(CLOSE_FINAL, why)
        try:
            await self.backend.shutdown_kernel(kernel_id, now=now)
        except NoSuchKernel:
            pass
        finally:
            self._kernels.pop(kernel_id, None)
        self.events.kernel_action(action, kernel_id, kernel.name, msg=f"Kernel {action}")

    async def restart(self, kernel_id: str) -> ServedKernel:
        kernel = self.get(kernel_id)
        kernel.bridge.inject_status("restarting")
        try:
            with anyio.fail_after(self.settings.kernel_info_timeout):
                await self.backend.restart_kernel(kernel_id)
        except (KernelyardError, TimeoutError) as exc:
            kernel.reason = str(exc) or "restart timed out"
            self.events.kernel_action(
                "restart",
                kernel_id,
                kernel.name,
                msg=f"Kernel restart failed: {exc}",
                status_code=500,
            )
            raise
        kernel.reason = ""
        kernel.bridge.reopen()
        self.events.kernel_action("restart", kernel_id, kernel.name, msg="Kernel restarted")
        return kernel

    async def interrupt(self, kernel_id: str) -> None:
        kernel = self.get(kernel_id)
        try:
            await self.backend.interrupt_kernel(kernel_id)
        except KernelyardError as exc:
            self.events.kernel_action(
                "interrupt",
                kernel_id,
                kernel.name,
                msg=f"Interrupt failed: {exc}",
                status_code=status_for(exc)[0],
            )
            raise
        self.events.kernel_action("interrupt", kernel_id, kernel.name, msg="Kernel interrupted")

    def close_connections(self) -> None:
        """Tell every connection the server is stopping (close code 1001)."""
        for kernel in self._kernels.values():
            kernel.bridge.close(CLOSE_SERVER_STOPPING, "the server is stopping")

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

    # -- culling ---------------------------------------------------------------------------

    async def _cull_forever(self) -> None:
        while True:
            await anyio.sleep(self.settings.cull_interval)
            await self.cull_once()

    async def cull_once(self) -> list[str]:
        """One culling pass; returns the ids it culled."""
        now, settings, culled = _utcnow(), self.settings, []
        for kernel in list(self._kernels.values()):
            timeout = kernel.cull_idle_timeout
            if should_cull(
                kernel.bridge.activity,
                now=now,
                idle_timeout=settings.cull_idle_timeout if timeout is None else timeout,
                connections=kernel.bridge.connections,
                cull_busy=settings.cull_busy,
                cull_connected=settings.cull_connected,
            ):
                log.warning(
                    "culling kernel %s (%s): %s since %s",
                    kernel.id,
                    kernel.name,
                    kernel.bridge.activity.execution_state,
                    format_time(kernel.bridge.activity.last_activity),
                )
                kernel.reason = "culled"
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
