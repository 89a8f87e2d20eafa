"""KernelProcess: one launched kernel process and the files it owns.

The process runs in its own session, so its process group is its pid, and
every signal goes to the whole group: a kernel's own children are interrupted
and killed with it. asyncio's subprocess transport (or, for a kernel forked by
a fork server, that server) reaps the process the moment it exits, so there
is never a zombie, and :meth:`wait` wakes on that event, not by polling.

The kernel's stderr is forwarded as it arrives (to our stderr by default) and
the last few KiB are kept, so a kernel that dies while starting can be
reported with the reason it printed.

It is the local provisioners' :class:`~kernelyard.provisioning.provisioner.ProvisionedKernel`
(the "manager" of jupyter_kernel_mgmt's ``launch()``): process work only
(alive, wait, signal, interrupt, kill, cleanup). Messages are not its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import anyio

from kernelyard.provisioning.options import StderrSink
from kernelyard.provisioning.ports import PortReservation
from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.provisioning.spec import InterruptMode, LaunchSpec
from kernelyard.wire.connection import ConnectionInfo

__all__ = [
    "KernelProcess",
    "ProcessEvents",
    "ProcessHandle",
    "process_start_time",
    "signal_group",
]

log = logging.getLogger(__name__)

_TAIL_BYTES = 8192


class ProcessHandle(Protocol):
    """What a kernel process is driven through: asyncio's subprocess transport, or a
    :class:`~kernelyard.provisioning.forkserver.ForkedProcess` that looks like one.
    """

    def get_pid(self) -> int: ...

    def get_returncode(self) -> int | None: ...

    def close(self) -> None: ...


class ProcessEvents(asyncio.SubprocessProtocol):
    """Receives the kernel's stderr and its exit, as loop callbacks (no task needed)."""

    def __init__(self, sink: StderrSink | None) -> None:
        self._sink = sink
        self.tail = bytearray()
        self.exited = asyncio.Event()
        self.stderr_closed = asyncio.Event()
        self.exit_callbacks: list[Callable[[], None]] = []

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        if self._sink is not None:
            self._sink(chunk)
        self.tail += chunk
        del self.tail[:-_TAIL_BYTES]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.stderr_closed.set()

    def process_exited(self) -> None:
        self.exited.set()
        for callback in list(self.exit_callbacks):
            try:
                callback()
            except Exception:  # one broken listener must not hide the exit from others
                log.exception("kernel exit callback failed")


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, ``/proc/PID/stat`` field 22); None
    when there is no such process, or only its zombie.
    """
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None  # dead, not yet reaped by its parent: gone all the same
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def signal_group(leader: int, signum: int) -> None:
    """``signum`` to the process group ``leader`` leads (a kernel and its children);
    to the leader alone if the group is out of reach; nothing if it is gone.
    """
    try:
        os.killpg(leader, signum)
    except ProcessLookupError:
        pass  # gone between the caller's check and the signal
    except PermissionError:  # the group is out of reach (should not happen): the leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(leader, signum)


class KernelProcess:
    """A running (or finished) kernel process started by a local provisioner."""

    def __init__(
        self,
        *,
        transport: ProcessHandle,
        protocol: ProcessEvents,
        argv: list[str],
        launch_spec: LaunchSpec,
        connection_info: ConnectionInfo,
        connection_file: Path,
        reservation: PortReservation | None,
        provisioner: str = "local",
        forked: bool = False,
        persist: bool = False,
    ) -> None:
        self._transport = transport
        #: True when a fork server forked the kernel (it is then the server's child, not ours).
        self.forked = forked
        #: Launched with ``LaunchOptions.persist``: it outlives a killed manager.
        self.persist = persist
        self._protocol = protocol
        self.pid: int = transport.get_pid()
        self.argv = argv
        self.launch_spec = launch_spec
        self.connection_info = connection_info
        self.connection_file = connection_file
        self._reservation = reservation
        self._provisioner = provisioner

    @property
    def interrupt_mode(self) -> InterruptMode:
        return self.launch_spec.interrupt_mode

    def attach_info(self, kernel_id: str) -> AttachInfo:
        """Its ports, and its pid, the pid's start time and its connection file (JSON
        data; see :class:`AttachInfo`): what adopting it again checks it by.
        """
        location: dict[str, object] = {
            "pid": self.pid,
            "connection_file": str(self.connection_file),
        }
        started = process_start_time(self.pid)
        if started is not None:
            location["start_time"] = started
        if self.persist:
            location["persist"] = True  # launched to outlive its manager: adoptable
        return AttachInfo(self._provisioner, kernel_id, self.connection_info, location)

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while running."""
        return self._transport.get_returncode()

    def is_alive(self) -> bool:
        return self.returncode is None

    @property
    def exit_description(self) -> str:
        return f"exited with code {self.returncode}"

    async def wait(self) -> int:
        """Wait for the process to exit; returns its exit code."""
        await self._protocol.exited.wait()
        code = self.returncode
        assert code is not None  # set by the transport before process_exited
        return code

    def on_exit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` in the event loop when the process exits; returns an undo."""
        self._protocol.exit_callbacks.append(callback)
        if self._protocol.exited.is_set():
            asyncio.get_running_loop().call_soon(callback)

        def remove() -> None:
            if callback in self._protocol.exit_callbacks:
                self._protocol.exit_callbacks.remove(callback)

        return remove

    async def stderr_tail(self, *, settle: float = 0.5) -> str:
        """The last few KiB the kernel wrote to stderr (after it closed, or ``settle`` s)."""
        with anyio.move_on_after(settle):
            await self._protocol.stderr_closed.wait()
        return self._protocol.tail.decode("utf-8", "replace")

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the kernel's process group; a no-op once it is gone."""
        if self.returncode is not None:
            return
        signal_group(self.pid, signum)

    def interrupt(self) -> None:
        """SIGINT to the process group (the kernelspec's ``signal`` interrupt mode)."""
        self.send_signal(signal.SIGINT)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def release_ports(self) -> None:
        """The kernel has bound its ports: stop holding them (idempotent)."""
        if self._reservation is not None:
            self._reservation.release()

    def ipc_files(self) -> list[Path]:
        return [Path(p) for p in self.connection_info.ipc_paths()]

    def cleanup(self, *, remove_connection_file: bool = True) -> None:
        """Release ports, close the transport, remove ipc socket files and (unless told
        otherwise, as for a restart) the connection file. Call after the process exited.
        """
        self.release_ports()
        if self.returncode is None:
            log.warning("cleaning up kernel process %d while it still runs; killing it", self.pid)
            self.kill()
        self._transport.close()
        paths = self.ipc_files()
        if remove_connection_file:
            paths.append(self.connection_file)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
