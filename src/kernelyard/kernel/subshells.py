"""The kernel's subshells (JEP 91), by id: each a shell worker on a thread of its own.

Created, deleted and listed on the control thread, looked up on the I/O
thread for every shell request that names one, enumerated by an interrupt on
the main thread, stopped at exit: every method is thread-safe. A subshell's
thread is traced by the debugger like the main one (it runs user code).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kernelyard.kernel.worker import ShellWorker

__all__ = ["Subshells"]


class _Subshell:
    def __init__(self, worker: ShellWorker) -> None:
        self.worker = worker
        self.thread = threading.Thread(
            target=worker.run_forever, name=f"kernelyard-subshell-{worker.subshell_id}", daemon=True
        )


class Subshells:
    """The running subshells; ``new_worker(subshell_id)`` makes each one's worker."""

    def __init__(self, new_worker: Callable[[str], ShellWorker]) -> None:
        self._new_worker = new_worker
        self._subshells: dict[str, _Subshell] = {}
        self._lock = threading.Lock()

    def create(self) -> str:
        """Start a subshell; returns its new id."""
        subshell_id = uuid.uuid4().hex
        subshell = _Subshell(self._new_worker(subshell_id))
        with self._lock:
            self._subshells[subshell_id] = subshell
        subshell.thread.start()
        return subshell_id

    def delete(self, subshell_id: str) -> bool:
        """Stop a subshell (its running request finishes first); False if there is none."""
        with self._lock:
            subshell = self._subshells.pop(subshell_id, None)
        if subshell is None:
            return False
        subshell.worker.stop()
        return True

    def get(self, subshell_id: str) -> ShellWorker | None:
        """The worker of subshell ``subshell_id``, or None."""
        with self._lock:
            subshell = self._subshells.get(subshell_id)
        return subshell.worker if subshell is not None else None

    def ids(self) -> list[str]:
        """The ids of the running subshells, oldest first."""
        with self._lock:
            return list(self._subshells)

    def workers(self) -> list[ShellWorker]:
        """The running subshells' workers, at this moment."""
        with self._lock:
            return [subshell.worker for subshell in self._subshells.values()]

    def close(self, timeout: float = 1.0) -> None:
        """Stop every subshell, waiting up to ``timeout`` seconds for each thread (at exit)."""
        with self._lock:
            subshells = list(self._subshells.values())
            self._subshells.clear()
        for subshell in subshells:
            subshell.worker.stop()
            subshell.thread.join(timeout)
