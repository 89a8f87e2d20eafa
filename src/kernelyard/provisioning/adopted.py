"""AdoptedProcess: a local kernel taken over from its AttachInfo, not our child.

A kernel launched with ``LaunchOptions.persist`` outlives the process that
started it when that process is killed or crashes. Its AttachInfo names its pid and
the pid's start time (from ``/proc``, so that a pid the system gave to
another process since is not taken for the kernel). The new manager cannot
reap it (its parent is init now), so it learns of its end from a pidfd
(Linux 5.3+; else a look every POLL seconds), and its exit code stays
unknown. It is its own session's leader, so signals go to its process group
as for a kernel we started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from kernelyard.errors import LaunchError
from kernelyard.provisioning.exits import ExitNotice, ExitNoticed
from kernelyard.provisioning.forked import UNKNOWN_EXIT_CODE
from kernelyard.provisioning.process import process_start_time, signal_group
from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.provisioning.spec import InterruptMode, LaunchSpec
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["AdoptedProcess", "adopt_local"]

log = logging.getLogger(__name__)

#: Seconds between looks at an adopted kernel's pid where there is no pidfd.
POLL = 0.5


def adopt_local(attach: AttachInfo, spec: LaunchSpec, *, provisioner: str) -> AdoptedProcess:
    """The running kernel ``attach`` names; LaunchError when its process is gone (or
    its pid now belongs to another process) or the data is not a local kernel's.
    """
    pid, started = attach.location.get("pid"), attach.location.get("start_time")
    if not isinstance(pid, int) or not isinstance(started, int):
        raise LaunchError(
            f"kernel {attach.kernel_id}: its attach info has no pid and start time to adopt by"
        )
    if attach.provisioner != provisioner:
        raise LaunchError(
            f"kernel {attach.kernel_id} was started by provisioner {attach.provisioner!r}, "
            f"not {provisioner!r}"
        )
    if not attach.location.get("persist"):
        raise LaunchError(
            f"kernel {attach.kernel_id} was not launched to persist: it ends with its manager"
        )
    if process_start_time(pid) != started:
        raise LaunchError(
            f"kernel {attach.kernel_id}: its process {pid} is gone (or the pid is another's now)"
        )
    try:
        leads = os.getpgid(pid) == pid
    except ProcessLookupError:
        leads = False
    if not leads:  # its group is what signals go to: not a kernel we started
        raise LaunchError(f"kernel {attach.kernel_id}: process {pid} leads no process group")
    file = attach.location.get("connection_file")
    return AdoptedProcess(
        pid=pid,
        start_time=started,
        connection_info=attach.connection_info,
        connection_file=Path(file) if isinstance(file, str) else None,
        launch_spec=spec,
        provisioner=provisioner,
    )


class AdoptedProcess(ExitNoticed):
    """A running local kernel we did not start; see the module docstring."""

    def __init__(
        self,
        *,
        pid: int,
        start_time: int,
        connection_info: ConnectionInfo,
        connection_file: Path | None,
        launch_spec: LaunchSpec,
        provisioner: str,
    ) -> None:
        self.pid = pid
        self.start_time = start_time
        self.connection_info = connection_info
        self.connection_file = connection_file
        self.launch_spec = launch_spec
        self.argv = list(launch_spec.argv)
        self._provisioner = provisioner
        self._exit = ExitNotice()
        self._pidfd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._loop = loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd here: look from time to time
            self._poller = loop.create_task(self._poll())
        else:
            loop.add_reader(self._pidfd, self._gone)
            if process_start_time(pid) != start_time:  # reused before the pidfd held it
                self._gone()

    # -- state --------------------------------------------------------------------

    @property
    def interrupt_mode(self) -> InterruptMode:
        return self.launch_spec.interrupt_mode

    @property
    def exit_description(self) -> str:
        return "exited (adopted: how is its parent's to know)"

    def _gone(self) -> None:
        code = UNKNOWN_EXIT_CODE
        if self._pidfd is not None:
            with contextlib.suppress(ChildProcessError, OSError):  # ours to reap, if a child
                reaped = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
                if reaped is not None:
                    code = (
                        reaped.si_status if reaped.si_code == os.CLD_EXITED else -reaped.si_status
                    )
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._exit.ended(code)

    async def _poll(self) -> None:
        while process_start_time(self.pid) == self.start_time:
            await asyncio.sleep(POLL)
        self._gone()

    async def stderr_tail(self) -> str:
        """ "": its stderr went to the manager that started it."""
        return ""

    # -- signals --------------------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        """``signum`` to its process group (it leads its own session)."""
        if self.returncode is not None or process_start_time(self.pid) != self.start_time:
            return
        signal_group(self.pid, signum)

    def interrupt(self) -> None:
        self.send_signal(signal.SIGINT)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def release_ports(self) -> None:
        """Nothing held here: the kernel bound its ports long ago."""

    def cleanup(self, *, remove_connection_file: bool = True) -> None:
        """Stop watching; remove its connection file unless it restarts in place."""
        if self._poller is not None:
            self._poller.cancel()
        if self._pidfd is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if remove_connection_file:
            for path in [self.connection_file, *map(Path, self.connection_info.ipc_paths())]:
                if path is not None:
                    path.unlink(missing_ok=True)

    def attach_info(self, kernel_id: str) -> AttachInfo:
        location: dict[str, object] = {
            "pid": self.pid,
            "start_time": self.start_time,
            "persist": True,
        }
        if self.connection_file is not None:
            location["connection_file"] = str(self.connection_file)
        return AttachInfo(self._provisioner, kernel_id, self.connection_info, location)
