"""The manager's end of the link: the one connection a node's supervisor keeps to us.

The supervisor (:mod:`.node`) opens it to the start's callback port and
sends its first ``ready`` report there (:mod:`.callback` checks it); the
connection then stays, for the life of the job. Over it, every line signed
with the kernel's HMAC key:

* from the node: ``ready`` (after a restart in the allocation), ``exited``
  (the kernel's exit code, as soon as the supervisor reaped it);
* to the node: ``signal``, ``kill``, ``restart`` (with a new nonce) and
  ``exit``, each with a ``seq`` greater than the last, so that a line cannot
  be replayed.

A line that is badly signed or malformed is ignored and logged once; the
link's end (EOF, a reset) is news too: the supervisor, and with it the
kernel, is gone or unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kernelyard.errors import LaunchError
from kernelyard.provisioning.slurm.node import MAX_LINE, PORT_FIELDS, read_signed, signed_line

__all__ = ["NodeLink", "Report", "report_from"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Report:
    """Where the kernel runs: its job, node, address (as the node sees its route to
    us), pid on the node, and the five ports it bound.
    """

    job_id: str
    node: str
    address: str
    pid: int
    ports: dict[str, int]


def report_from(
    fields: Mapping[str, object], *, kernel_id: str, nonce: str, job_id: str | None
) -> Report | str:
    """The report ``fields`` (a verified line's) make, or what is wrong with them: another
    kernel's, an earlier start's (replayed), another job's, or without five ports.
    """
    if fields.get("kernel_id") != kernel_id:
        return "a report for another kernel"
    if fields.get("nonce") != nonce:
        return "a report of an earlier start (replayed)"
    if job_id is not None and str(fields.get("job_id")) != job_id:
        return f"a report from job {fields.get('job_id')!r}, not {job_id}"
    ports = fields.get("ports")
    if not isinstance(ports, dict) or not all(
        isinstance(ports.get(name), int) and 0 < ports[name] < 65536 for name in PORT_FIELDS
    ):
        return "a report without five valid ports"
    pid = fields.get("pid")
    return Report(
        job_id=str(fields.get("job_id", "")),
        node=str(fields.get("node", "")),
        address=str(fields.get("address", "")),
        pid=pid if isinstance(pid, int) else 0,
        ports={name: int(ports[name]) for name in PORT_FIELDS},
    )


class NodeLink:
    """One supervisor's connection. ``on_exited(pid, code)`` and ``on_lost()`` are called
    in the loop as the node says so, or as the connection ends.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        key: bytes,
        kernel_id: str,
        job_id: str,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._key, self.kernel_id, self.job_id = key, kernel_id, job_id
        self._seq = 0
        self._ready: tuple[str, asyncio.Future[Report]] | None = None
        self._warned = False
        self.on_exited: Callable[[int, int], None] = lambda pid, code: None
        self.on_lost: Callable[[], None] = lambda: None
        self.open = True
        self._task = asyncio.get_running_loop().create_task(self._read())

    def send(self, op: str, **fields: object) -> bool:
        """Send command ``op``; False if the link is closed (the caller falls back)."""
        if not self.open or self._writer.is_closing():
            return False
        self._seq += 1
        self._writer.write(signed_line(self._key, {"op": op, "seq": self._seq, **fields}))
        return True

    async def restart(self, nonce: str, timeout: float) -> Report:
        """Have the supervisor start the kernel again; its ``ready`` report. LaunchError
        when the kernel ends first, the link ends, or ``timeout`` passes.
        """
        future: asyncio.Future[Report] = asyncio.get_running_loop().create_future()
        self._ready = (nonce, future)
        if not self.send("restart", nonce=nonce):
            raise LaunchError(f"Slurm job {self.job_id}: the node's supervisor is gone")
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise LaunchError(
                f"Slurm job {self.job_id}: the kernel restarted in its allocation did not "
                f"report its ports within {timeout:g} s"
            ) from None
        finally:
            self._ready = None

    def close(self) -> None:
        """Close our end (the supervisor, told ``exit`` first or not, then ends)."""
        self.open = False
        self._writer.close()

    async def _read(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                if len(line) > MAX_LINE:
                    self._refuse("an over-long line")
                    break
                self._take(line)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("Slurm job %s: the link ended: %s", self.job_id, exc)
        finally:
            was_open, self.open = self.open, False
            with contextlib.suppress(Exception):
                self._writer.close()
            self._fail_ready(f"Slurm job {self.job_id}: the node's supervisor is gone")
            if was_open:
                self.on_lost()

    def _take(self, line: bytes) -> None:
        fields = read_signed(self._key, line)
        if fields is None:
            self._refuse("a badly signed line")
            return
        event = fields.get("event")
        if event == "exited":
            pid, code = fields.get("pid"), fields.get("code")
            if isinstance(pid, int) and isinstance(code, int):
                # Only the kernel of the start we wait for fails it (a late one of an
                # earlier start, stopped now, must not).
                if self._ready is not None and fields.get("nonce") == self._ready[0]:
                    self._fail_ready(
                        f"Slurm job {self.job_id}: the kernel exited with code {code} "
                        "before it reported its ports"
                    )
                self.on_exited(pid, code)
            return
        if event == "ready" and self._ready is not None:
            nonce, future = self._ready
            report = report_from(fields, kernel_id=self.kernel_id, nonce=nonce, job_id=self.job_id)
            if isinstance(report, str):
                self._refuse(report)
            elif not future.done():
                future.set_result(report)
            return
        self._refuse(f"an unexpected {event!r} line")

    def _fail_ready(self, why: str) -> None:
        if self._ready is not None and not self._ready[1].done():
            self._ready[1].set_exception(LaunchError(why))

    def _refuse(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("Slurm job %s: ignored %s on the node's link", self.job_id, what)
