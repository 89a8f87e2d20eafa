"""A kernel that runs as a Slurm job: the job (:class:`Allocation`) and each kernel run
in it (:class:`SlurmKernel`, the ProvisionedKernel the manager drives).

The job's supervisor (:mod:`.node`) keeps a link to us (:mod:`.link`), so:
signals, kill and ``exit`` go over it, and the kernel's exit comes back over
it the moment the supervisor reaped it; a restart starts the kernel again in
the same job (no new queue wait) while the link is up. Without the link (it
broke: the node or the network is gone), signals go through ``scancel
--batch --signal=...`` and kill through ``scancel --signal=KILL``. Whether the
job still runs comes from one ``squeue`` for every job of the cluster each
``poll_interval`` seconds (:class:`JobWatcher`), how it ended from
``scontrol show job`` (exit code and signal, or Slurm's reason). The
manager's heartbeat notices a silent kernel sooner.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from kernelyard.provisioning.exits import ExitNotice, ExitNoticed
from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.provisioning.slurm.commands import JobState, SlurmCommands
from kernelyard.provisioning.slurm.link import NodeLink, Report
from kernelyard.provisioning.slurm.watcher import JobWatcher
from kernelyard.provisioning.spec import InterruptMode, LaunchSpec
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["Allocation", "SlurmKernel"]

log = logging.getLogger(__name__)

#: What ``returncode`` is when the kernel ended and nobody can say how.
UNKNOWN_EXIT = -1
#: How much of the job's output file ``stderr_tail`` reads.
TAIL_BYTES = 8192
#: Seconds from the kernel's exit to Slurm saying its job ended (scancel, squeue and
#: scontrol each go through munge): what a manager adds to its waits for an exit
#: when the link is down. With the link, the supervisor says so within LINKED_LATENCY.
EXIT_LATENCY = 5.0
LINKED_LATENCY = 0.5


class Allocation:
    """One Slurm job and its supervisor's link: where a kernel runs, across restarts."""

    def __init__(
        self,
        *,
        job_id: str,
        node: str,
        commands: SlurmCommands,
        link: NodeLink,
        poll_interval: float,
        output: Path | None,
    ) -> None:
        self.job_id = job_id
        self.node = node
        self.commands = commands
        self.link = link
        self.output = output
        #: How Slurm says the job ended, once it did.
        self.ended: JobState | None = None
        self.gone = False  # the job ended, or its link broke
        self._finishing = False
        self.kernel: SlurmKernel | None = None  # the kernel running in it now
        self._tasks: set[asyncio.Task[None]] = set()
        self.watcher = JobWatcher.of(commands, poll_interval)
        self.watcher.watch(job_id, self._job_ended)
        link.on_exited = self._kernel_exited
        link.on_lost = self._link_lost

    @property
    def usable(self) -> bool:
        """Whether a kernel can be started again in it (the job runs, the link is up)."""
        return not self.gone and not self._finishing and self.link.open

    def run(self, kernel: SlurmKernel) -> None:
        self.kernel = kernel

    # -- what the node and Slurm say ------------------------------------------------

    def _kernel_exited(self, pid: int, code: int) -> None:
        if self.kernel is not None and self.kernel.pid == pid:
            self.kernel._ended(code)

    def _link_lost(self) -> None:
        if self._finishing:
            return  # told to exit: the supervisor closes the link as it goes
        self.gone = True
        log.warning("Slurm job %s on %s: the link to its supervisor broke", self.job_id, self.node)
        if self.kernel is not None:
            self.kernel._ended(UNKNOWN_EXIT, lost=True)
        self.watcher.poke()
        self._later(self.commands.cancel(self.job_id, signum=signal.SIGKILL))  # nothing left

    def _job_ended(self, shown: JobState | None) -> None:
        self.ended, self.gone = shown, True
        log.info(
            "Slurm job %s on %s ended: %s",
            self.job_id,
            self.node,
            shown.state if shown else "forgotten by Slurm",
        )
        code = shown.returncode if shown is not None else None
        if self.kernel is not None:
            self.kernel._ended(code if code is not None else UNKNOWN_EXIT)
        self.link.close()

    # -- what we do to it -----------------------------------------------------------

    def signal(self, signum: int) -> None:
        """``signum`` to the kernel's process group on the node."""
        if not self.link.send("signal", signum=signum):
            self._later(self.commands.cancel(self.job_id, signum=signum, batch=True))

    def kill(self) -> None:
        """The kernel and its children at once (the job goes on, for a restart)."""
        if not self.link.send("kill"):
            self._later(self.commands.cancel(self.job_id, signum=signal.SIGKILL))

    async def restart(self, nonce: str, timeout: float) -> Report:
        """Start the kernel again in this job; its report (see NodeLink.restart)."""
        return await self.link.restart(nonce, timeout)

    def finish(self) -> None:
        """The kernel is done with for good: the supervisor exits, and so the job."""
        if self._finishing or self.gone:
            return
        self._finishing = True
        if not self.link.send("exit"):
            self._later(self.commands.cancel(self.job_id))
        self.watcher.poke()  # its end is due

    def _later(self, work: object) -> None:
        assert asyncio.iscoroutine(work)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self.watcher.poke())  # its end is due soon


class SlurmKernel(ExitNoticed):
    """One run of a kernel in allocation ``allocation``; see the module docstring."""

    def __init__(
        self,
        *,
        allocation: Allocation,
        pid: int,
        connection_info: ConnectionInfo,
        argv: list[str],
        launch_spec: LaunchSpec,
        provisioner: str,
    ) -> None:
        self.allocation = allocation
        self.pid = pid  # on the node
        self.connection_info = connection_info
        self.argv = argv
        self.launch_spec = launch_spec
        self._provisioner = provisioner
        self._exit = ExitNotice()
        self._lost = False
        allocation.run(self)

    @property
    def job_id(self) -> str:
        return self.allocation.job_id

    @property
    def node(self) -> str:
        return self.allocation.node

    @property
    def ended(self) -> JobState | None:
        """How Slurm says the job ended (None while it runs: a restart reuses it)."""
        return self.allocation.ended

    # -- state --------------------------------------------------------------------

    @property
    def interrupt_mode(self) -> InterruptMode:
        return self.launch_spec.interrupt_mode

    @property
    def exit_latency(self) -> float:
        """See EXIT_LATENCY; the manager reads it (a local process has none)."""
        return LINKED_LATENCY if self.allocation.link.open else EXIT_LATENCY

    @property
    def exit_description(self) -> str:
        """``exited with code 1 (Slurm job 7 on n1: FAILED, NonZeroExitCode)``."""
        where = f"Slurm job {self.job_id} on {self.node}"
        shown = self.ended
        if shown is not None:
            why = f", {shown.reason}" if shown.reason and shown.reason != "None" else ""
            where += f": {shown.state}{why}"
        elif self._lost:
            where += ": its supervisor on the node stopped answering"
        return f"exited with code {self.returncode} ({where})"

    async def wait(self) -> int:
        """Wait for the kernel to end; its exit code (UNKNOWN_EXIT when nobody knows).

        Someone waits for the end, so it is expected soon: the watcher looks quickly.
        """
        if not self._exit.is_set:
            self.allocation.watcher.poke()
        return await self._exit.wait()

    def _ended(self, code: int, *, lost: bool = False) -> None:
        if self.returncode is None:
            self._lost = lost
        if self._exit.ended(code):
            log.info("kernel %s in Slurm job %s ended: code %s", self.pid, self.job_id, code)

    async def stderr_tail(self) -> str:
        """The end of the job's output file (stdout and stderr), where it can be read
        from here (a file system the node shares with us); "" elsewhere.
        """
        output = self.allocation.output
        if output is None:
            return ""
        try:
            with output.open("rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                handle.seek(max(0, size - TAIL_BYTES))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- signals (fire and forget: the manager's methods for them are not async) -----

    def send_signal(self, signum: int) -> None:
        """``signum`` to the kernel's process group on its node."""
        if self.returncode is None:
            self.allocation.signal(signum)

    def interrupt(self) -> None:
        self.send_signal(signal.SIGINT)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.returncode is None:
            self.allocation.kill()

    def release_ports(self) -> None:
        """Nothing held here: the kernel bound its own ports on its node."""

    def cleanup(self, *, remove_connection_file: bool = True) -> None:
        """The supervisor removed the connection file. For good (not a restart in
        place): the allocation is let go, and the job ends.
        """
        if remove_connection_file:
            self.allocation.finish()

    def attach_info(self, kernel_id: str) -> AttachInfo:
        """Its job, node and pid there, with its connection info (keys included)."""
        location = {"job_id": self.job_id, "node": self.node, "pid": self.pid}
        return AttachInfo(self._provisioner, kernel_id, self.connection_info, location)
