"""The manager's callback port: where a kernel's supervisor on a node first says where it is.

One listener per new job, on ``callback_ip`` and a port of the OS's choosing,
open from just before ``sbatch`` until the report comes. A report is one
line of JSON: ``{"body": ..., "signature": ...}``, the body signed with the
kernel's HMAC key (:func:`~kernelyard.provisioning.slurm.node.signed_line`).
A report that is not valid JSON, is badly signed, names another kernel or
job, or carries another start's nonce is ignored (and the first of those
logged), so a stranger cannot end the wait or point the manager elsewhere.
The connection that brought the valid report is kept: it is the job's link
(:mod:`.link`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from kernelyard.errors import LaunchError
from kernelyard.provisioning.slurm.link import NodeLink, Report, report_from
from kernelyard.provisioning.slurm.node import MAX_LINE, read_signed

__all__ = ["Callback", "Report"]

log = logging.getLogger(__name__)

#: Longest report line accepted.
MAX_REPORT = MAX_LINE


class Callback:
    """A listener for one kernel's report. Use as ``async with``; ``await report()``,
    then :meth:`link` for the connection it came on.
    """

    def __init__(self, ip: str, kernel_id: str, key: bytes) -> None:
        self.ip = ip
        self.kernel_id = kernel_id
        #: Signed into this start's report only: an old report (a restart keeps the
        #: key and the kernel id) cannot be replayed to point us at old ports.
        self.nonce = secrets.token_hex(16)
        #: Set once sbatch said it: a report from another job is refused.
        self.job_id: str | None = None
        self._key = key
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._report: asyncio.Future[tuple[Report, asyncio.StreamReader, asyncio.StreamWriter]]
        self._report = asyncio.get_running_loop().create_future()
        self._warned = False
        self._taken = False

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        """``host:port`` for the node (IPv6 in brackets)."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"

    async def __aenter__(self) -> Callback:
        try:
            self._server = await asyncio.start_server(self._handle, self.ip, 0, limit=MAX_REPORT)
        except OSError as exc:  # an address of another machine, or none at all
            raise LaunchError(
                f"cannot listen for the kernel's report on callback_ip {self.ip!r}: "
                f"{exc.strerror or exc}"
            ) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # a stranger's open connection must not stall us
            writer.close()
        await self._server.wait_closed()
        if self._report.done() and not self._taken:
            self._report.result()[2].close()  # nobody took the link (the start failed)

    async def report(self) -> Report:
        """The first valid report (waits for it)."""
        return (await asyncio.shield(self._report))[0]

    def link(self) -> NodeLink:
        """The link the report came on, now the caller's."""
        _, reader, writer = self._report.result()
        assert self.job_id is not None
        self._taken = True
        return NodeLink(reader, writer, key=self._key, kernel_id=self.kernel_id, job_id=self.job_id)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        report: Report | None = None
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            report = self._parse(line)
        except Exception as exc:  # whatever a stranger sends, before we know who it is
            self._refuse(f"an unreadable report ({type(exc).__name__})")
        finally:
            self._writers.discard(writer)
            if report is None or self._report.done():
                writer.close()
        if report is not None and not self._report.done():
            self._report.set_result((report, reader, writer))

    def _parse(self, line: bytes) -> Report | None:
        fields = read_signed(self._key, line.rstrip(b"\n"))
        if fields is None:
            self._refuse("a report with a wrong signature (forged, or another kernel's key)")
            return None
        report = report_from(fields, kernel_id=self.kernel_id, nonce=self.nonce, job_id=self.job_id)
        if isinstance(report, str):
            self._refuse(report)
            return None
        return report

    def _refuse(self, what: str) -> None:
        if not self._warned:  # once: a flood of garbage must not flood the log
            self._warned = True
            log.warning("kernel %s: ignored %s on the callback port", self.kernel_id, what)
