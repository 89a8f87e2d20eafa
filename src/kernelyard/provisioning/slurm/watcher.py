"""JobWatcher: one ``squeue`` per interval for every job of one Slurm cluster.

One watcher per event loop and Slurm environment (``SLURM_CONF``), kept in a
weak map of loops, so a closed loop takes its watcher with it. It calls each
job's callback once with ``scontrol``'s account of how the job ended, and it
ends a job only on ``scontrol``'s word: ``squeue``, asked for many jobs,
leaves some out when one id is unknown to it. A command that fails or hangs
is logged and tried again; a callback that raises is logged. :meth:`poke`
makes the next look come at once and the next few quickly (after a signal,
the kernel's end is due).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable

from kernelyard.errors import LaunchError
from kernelyard.provisioning.slurm.commands import JobState, SlurmCommands

__all__ = ["JobWatcher"]

log = logging.getLogger(__name__)

#: After a poke, the watcher looks every QUICK seconds for QUICK_FOR seconds.
QUICK = 0.1
QUICK_FOR = 5.0

_Key = frozenset[tuple[str, str]]
_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, JobWatcher]] = (
    weakref.WeakKeyDictionary()
)


class JobWatcher:
    """See the module docstring."""

    def __init__(self, commands: SlurmCommands, interval: float) -> None:
        self._commands = commands
        self.interval = interval
        self._jobs: dict[str, Callable[[JobState | None], None]] = {}
        self._poked = asyncio.Event()
        self._quick_until = 0.0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, commands: SlurmCommands, interval: float) -> JobWatcher:
        """The watcher of ``commands``' cluster in this event loop (made on first use)."""
        per_loop = _watchers.setdefault(asyncio.get_running_loop(), {})
        key = frozenset(commands.env.items())
        watcher = per_loop.get(key)
        if watcher is None:
            watcher = per_loop[key] = cls(commands, interval)
        watcher.interval = min(watcher.interval, interval)
        return watcher

    def watch(self, job_id: str, ended: Callable[[JobState | None], None]) -> None:
        """Call ``ended(state)`` once ``job_id`` runs no more (``None``: Slurm forgot it)."""
        self._jobs[job_id] = ended
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def forget(self, job_id: str) -> None:
        """Stop watching ``job_id`` (its callback will not be called)."""
        self._jobs.pop(job_id, None)

    def poke(self) -> None:
        """Look now, and quickly for a few seconds."""
        self._quick_until = time.monotonic() + QUICK_FOR
        self._poked.set()

    async def _run(self) -> None:
        while self._jobs:
            try:
                await self._look()
            except LaunchError as exc:  # a command that hung or failed: look again later
                log.warning("watching Slurm jobs: %s", exc)
            quick = time.monotonic() < self._quick_until
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), QUICK if quick else self.interval)
            self._poked.clear()

    async def _look(self) -> None:
        states = await self._commands.states(list(self._jobs))
        for job_id in list(self._jobs):
            state = states.get(job_id)
            if state is not None and not state.ended:
                continue
            shown = await self._commands.show(job_id)
            if shown is not None and not shown.ended:
                continue
            callback = self._jobs.pop(job_id, None)
            if callback is None:
                continue
            try:
                callback(shown)
            except Exception:  # one kernel's listener must not blind the others
                log.exception("Slurm job %s: its end's callback failed", job_id)
