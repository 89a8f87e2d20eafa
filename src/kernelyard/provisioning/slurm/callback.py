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
import socket
from collections.abc import Coroutine
from typing import Any

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

    It accepts on a plain listening socket, not an ``asyncio.Server``: since Python
    3.12.1 a server's ``wait_closed`` waits for every connection it accepted, and the
    link must outlive the listener.
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
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._report: asyncio.Future[tuple[Report, asyncio.StreamReader, asyncio.StreamWriter]]
        self._report = asyncio.get_running_loop().create_future()
        self._warned = False
        self._taken = False

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        """``host:port`` for the node (IPv6 in brackets)."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"

    async def __aenter__(self) -> Callback:
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.bind((self.ip, 0))
            listener.listen(16)
        except OSError as exc:  # an address of another machine, or none at all
            listener.close()
            raise LaunchError(
                f"cannot listen for the kernel's report on callback_ip {self.ip!r}: "
                f"{exc.strerror or exc}"
            ) from exc
        listener.setblocking(False)
        self._listener = listener
        self._spawn(self._accept(listener))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):  # a stranger's open connection must not stall us
            writer.close()
        if self._listener is not None:
            self._listener.close()
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

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while not self._report.done():
            connection, _ = await loop.sock_accept(listener)
            self._spawn(self._handle(connection))

    async def _handle(self, connection: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=connection, limit=MAX_REPORT)
        except OSError:
            connection.close()
            return
        self._writers.add(writer)
        report: Report | None = None
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            report = self._parse(line)
        except asyncio.CancelledError:
            writer.close()
            raise
        except Exception as exc:  # whatever a stranger sends, before we know who it is
            self._refuse(f"an unreadable report ({type(exc).__name__})")
        finally:
            self._writers.discard(writer)
        if report is None or self._report.done():
            writer.close()
            return
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
