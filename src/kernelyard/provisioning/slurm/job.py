"""SlurmKernel: a kernel that runs as a Slurm job, driven like a local process.

Signals go through ``scancel --batch --signal=...`` (the batch step is the
kernel: the node launcher exec'd it), kill through ``scancel --signal=KILL``.
Whether the job still runs comes from one ``squeue`` for every kernel of the
cluster each ``poll_interval`` seconds (:class:`JobWatcher`), quicker for a
few seconds after a signal; how it ended from ``scontrol show job`` (exit
code and signal, or Slurm's reason). The manager's heartbeat notices a
silent kernel sooner.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.provisioning.slurm.commands import JobState, SlurmCommands
from kernelyard.provisioning.slurm.watcher import JobWatcher
from kernelyard.provisioning.spec import InterruptMode, LaunchSpec
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["SlurmKernel"]

log = logging.getLogger(__name__)

#: What ``returncode`` is when the job ended and Slurm no longer says how.
UNKNOWN_EXIT = -1
#: How much of the job's output file ``stderr_tail`` reads.
TAIL_BYTES = 8192
#: Seconds from the kernel's exit to Slurm saying its job ended (scancel, squeue and
#: scontrol each go through munge): what a manager adds to its waits for an exit.
EXIT_LATENCY = 5.0


class SlurmKernel:
    """A kernel running as job ``job_id``; see the module docstring."""

    def __init__(
        self,
        *,
        job_id: str,
        node: str,
        pid: int,
        connection_info: ConnectionInfo,
        argv: list[str],
        launch_spec: LaunchSpec,
        commands: SlurmCommands,
        output: Path | None,
        poll_interval: float,
        provisioner: str,
    ) -> None:
        self.job_id = job_id
        self.node = node
        self.pid = pid  # on the node
        self.connection_info = connection_info
        self.argv = argv
        self.launch_spec = launch_spec
        self._commands = commands
        self._output = output
        self._poll_interval = poll_interval
        self._provisioner = provisioner
        self._returncode: int | None = None
        self.ended: JobState | None = None
        self._exited = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher = JobWatcher.of(commands, poll_interval)
        self._watcher.watch(job_id, self._ended)

    # -- state --------------------------------------------------------------------

    @property
    def interrupt_mode(self) -> InterruptMode:
        return self.launch_spec.interrupt_mode

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def is_alive(self) -> bool:
        return self._returncode is None

    @property
    def exit_description(self) -> str:
        """``exited with code 1 (Slurm job 7 on n1: FAILED, NonZeroExitCode)``."""
        shown = self.ended
        if shown is None:
            return f"exited with code {self._returncode} (Slurm job {self.job_id} on {self.node})"
        why = f", {shown.reason}" if shown.reason and shown.reason != "None" else ""
        return (
            f"exited with code {self._returncode} "
            f"(Slurm job {self.job_id} on {self.node}: {shown.state}{why})"
        )

    #: See EXIT_LATENCY; the manager reads it (a local process has none).
    exit_latency = EXIT_LATENCY

    async def wait(self) -> int:
        """Wait for the job to end; its exit code (UNKNOWN_EXIT when Slurm forgot it).

        Someone waits for the end, so it is expected soon: the watcher looks quickly.
        """
        if not self._exited.is_set():
            self._watcher.poke()
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode

    def on_exit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` in the loop when the job ends (soon, if it has)."""
        self._callbacks.append(callback)
        if self._exited.is_set():
            asyncio.get_running_loop().call_soon(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def _ended(self, shown: JobState | None) -> None:
        self.ended = shown
        code = shown.returncode if shown is not None else None
        self._returncode = code if code is not None else UNKNOWN_EXIT
        log.info(
            "kernel job %s on %s ended: %s, code %s",
            self.job_id,
            self.node,
            shown.state if shown else "forgotten by Slurm",
            self._returncode,
        )
        self._exited.set()
        loop = asyncio.get_running_loop()
        for callback in list(self._callbacks):  # as a local process's: soon, in the loop
            loop.call_soon(callback)

    async def stderr_tail(self) -> str:
        """The end of the job's output file (stdout and stderr), where it can be read
        from here (a file system the node shares with us); "" elsewhere.
        """
        if self._output is None:
            return ""
        try:
            with self._output.open("rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                handle.seek(max(0, size - TAIL_BYTES))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- signals (fire and forget: the manager's methods for them are not async) -----

    def _later(self, signum: int | None, *, batch: bool) -> None:
        if self._returncode is not None:
            return
        task = asyncio.get_running_loop().create_task(
            self._commands.cancel(self.job_id, signum=signum, batch=batch)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._watcher.poke())  # its end is due soon

    def send_signal(self, signum: int) -> None:
        """``signum`` to the kernel (the job's batch step)."""
        self._later(signum, batch=True)

    def interrupt(self) -> None:
        self.send_signal(signal.SIGINT)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """The whole job, at once."""
        self._later(signal.SIGKILL, batch=False)

    def release_ports(self) -> None:
        """Nothing held here: the kernel bound its own ports on its node."""

    def cleanup(self, *, remove_connection_file: bool = True) -> None:
        """Nothing is left here: the node launcher removed the connection file, and the
        watcher forgets a job once it ended.
        """
        if self._returncode is not None:
            self._watcher.forget(self.job_id)

    def attach_info(self, kernel_id: str) -> AttachInfo:
        """Its job, node and pid there, with its connection info (keys included)."""
        location = {"job_id": self.job_id, "node": self.node, "pid": self.pid}
        return AttachInfo(self._provisioner, kernel_id, self.connection_info, location)
