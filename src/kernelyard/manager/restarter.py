"""KernelRestarter: bring a kernel back when it dies without being asked to.

It watches the process (its exit reaches the manager as a loop callback) and,
optionally, the heartbeat (a kernel whose process lives but no longer answers
is killed and restarted). A kernel that is shutting down, stopped or being
restarted on purpose is never revived: the restarter acts only on the DEAD
state, which intentional operations never pass through.

Run it in a task group for as long as it should supervise::

    async with anyio.create_task_group() as tg:
        tg.start_soon(KernelRestarter(manager, on_failed=report).run)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from kernelyard.errors import InvalidState, KernelyardError
from kernelyard.lifecycle import KernelState
from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.restart_policy import RestartBudget
from kernelyard.transport import Heartbeat
from kernelyard.wire import ConnectionInfo

__all__ = ["KernelRestarter", "RestartCallback", "RestartEvent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartEvent:
    """What a restarter callback receives."""

    kernel_id: str
    reason: str
    exit_code: int | None
    attempt: int  # restart attempts so far in this run of deaths (0 in ``died``)
    restart_limit: int
    error: str | None = None  # why the last attempt failed, if it did


#: Called with each event (on the loop; its return value is ignored).
RestartCallback = Callable[[RestartEvent], object]


class KernelRestarter:
    """Restarts ``manager``'s kernel when it dies, up to ``restart_limit`` attempts in a row."""

    def __init__(
        self,
        manager: KernelManager,
        *,
        restart_limit: int = 5,
        stable_start_time: float = 10.0,
        heartbeat: bool = True,
        heartbeat_interval: float = 1.0,
        time_to_dead: float = 3.0,
        on_died: RestartCallback | None = None,
        on_restarted: RestartCallback | None = None,
        on_failed: RestartCallback | None = None,
    ) -> None:
        self.manager = manager
        self.budget = RestartBudget(restart_limit, stable_start_time)
        self.heartbeat = heartbeat
        self.heartbeat_interval = heartbeat_interval
        self.time_to_dead = time_to_dead
        self._callbacks = {"died": on_died, "restarted": on_restarted, "failed": on_failed}

    def _notify(self, which: str, event: RestartEvent) -> None:
        callback = self._callbacks[which]
        if callback is None:
            return
        try:
            callback(event)
        except Exception:  # a broken callback must not stop supervision
            log.exception("restarter %s callback failed", which)

    async def run(self) -> None:
        """Supervise until the kernel is stopped on purpose or restarts are used up.

        While it runs, a death is announced as one that will be undone
        (``will_restart``); when it ends with the kernel dead, the kernel is
        given up (the lifecycle's GAVE_UP).
        """
        lifecycle = self.manager.lifecycle
        lifecycle.supervise(True)
        try:
            await self._supervise()
        finally:
            lifecycle.supervise(False)

    async def _supervise(self) -> None:
        manager = self.manager
        if manager.state is KernelState.RUNNING:
            self.budget.started(time.monotonic())
        while True:
            state = manager.state
            if state in (KernelState.SHUTTING_DOWN, KernelState.STOPPED):
                return
            if state is KernelState.DEAD:
                if not await self._revive():
                    return
                continue
            async with anyio.create_task_group() as tg:
                if state is KernelState.RUNNING and self.heartbeat and manager.connection_info:
                    tg.start_soon(self._watch_heartbeat, manager.connection_info)
                await manager.wait_for_change()
                tg.cancel_scope.cancel()

    async def _watch_heartbeat(self, info: ConnectionInfo) -> None:
        def silent(seconds: float) -> None:
            self.manager.declare_dead(f"heartbeat silent for {seconds:.1f} s")

        while True:
            try:
                await Heartbeat(
                    info,
                    interval=self.heartbeat_interval,
                    time_to_dead=self.time_to_dead,
                    on_dead=silent,
                ).run()
            except KernelyardError as exc:
                # No socket to be had (too many open files): the process is still watched;
                # the heartbeat tries again, and no other kernel's supervision is harmed.
                log.warning("kernel %s: heartbeat paused: %s", self.manager.kernel_id, exc)
                await anyio.sleep(max(1.0, 5 * self.heartbeat_interval))

    async def _revive(self) -> bool:
        manager = self.manager
        death = manager.death
        self.budget.died(time.monotonic())
        event = RestartEvent(
            kernel_id=manager.kernel_id,
            reason=str(death) if death else "kernel died",
            exit_code=death.exit_code if death else None,
            attempt=self.budget.attempts,
            restart_limit=self.budget.restart_limit,
        )
        self._notify("died", event)
        error: str | None = None
        while (attempt := self.budget.next_attempt()) is not None:
            event = RestartEvent(
                event.kernel_id, event.reason, event.exit_code, attempt, event.restart_limit, error
            )
            log.warning(
                "restarting kernel %s (attempt %d of %d)",
                manager.kernel_id,
                attempt,
                event.restart_limit,
            )
            try:
                # The first attempt keeps the ports clients know; later ones take
                # fresh ports in case a port clash is what kills the kernel.
                await manager.restart(now=True, newports=attempt > 1)
            except InvalidState:
                return False  # shut down meanwhile: nothing to revive
            except KernelyardError as exc:
                error = str(exc)
                log.warning(
                    "restart attempt %d of kernel %s failed: %s", attempt, manager.kernel_id, exc
                )
                continue
            self.budget.started(time.monotonic())
            self._notify("restarted", event)
            return True
        failed = RestartEvent(
            event.kernel_id,
            event.reason,
            event.exit_code,
            self.budget.attempts,
            event.restart_limit,
            error,
        )
        log.error("kernel %s died and could not be restarted", manager.kernel_id)
        self._notify("failed", failed)
        return False
