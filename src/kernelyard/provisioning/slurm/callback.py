"""The manager's callback port: where a kernel on a node says where it is.

One listener per start, on ``callback_ip`` and a port of the OS's choosing,
open from just before ``sbatch`` until the report comes. A report is one
line of JSON: ``{"body": ..., "signature": ...}``, the body signed with the
kernel's HMAC key (:func:`~kernelyard.provisioning.slurm.node.signature`).
A report that is not valid JSON, is badly signed or names another kernel is
ignored (and the first of those logged), so a stranger cannot end the wait
or point the manager elsewhere.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from dataclasses import dataclass

from kernelyard.errors import LaunchError
from kernelyard.provisioning.slurm.node import PORT_FIELDS, signature

__all__ = ["Callback", "Report"]

log = logging.getLogger(__name__)

#: Longest report line accepted.
MAX_REPORT = 64 * 1024


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


class Callback:
    """A listener for one kernel's report. Use as ``async with``; ``await report()``."""

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
        self._report: asyncio.Future[Report] | None = None
        self._warned = False

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
        self._report = asyncio.get_running_loop().create_future()
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

    async def report(self) -> Report:
        """The first valid report (waits for it)."""
        assert self._report is not None
        return await asyncio.shield(self._report)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            report = self._parse(line)
        except Exception as exc:  # whatever a stranger sends, before we know who it is
            self._refuse(f"an unreadable report ({type(exc).__name__})")
            report = None
        finally:
            self._writers.discard(writer)
            writer.close()
        if report is not None and self._report is not None and not self._report.done():
            self._report.set_result(report)

    def _parse(self, line: bytes) -> Report | None:
        message = json.loads(line)
        body = message.get("body") if isinstance(message, dict) else None
        signed = message.get("signature") if isinstance(message, dict) else None
        if not isinstance(body, str) or not isinstance(signed, str):
            self._refuse("a report without body and signature")
            return None
        expected = signature(self._key, body.encode())
        if not hmac.compare_digest(expected.encode(), signed.encode()):
            self._refuse("a report with a wrong signature (forged, or another kernel's key)")
            return None
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("kernel_id") != self.kernel_id:
            self._refuse("a report for another kernel")
            return None
        if data.get("nonce") != self.nonce:
            self._refuse("a report of an earlier start (replayed)")
            return None
        if self.job_id is not None and str(data.get("job_id")) != self.job_id:
            self._refuse(f"a report from job {data.get('job_id')!r}, not {self.job_id}")
            return None
        ports = data.get("ports", {})
        if not all(
            isinstance(ports.get(name), int) and 0 < ports[name] < 65536 for name in PORT_FIELDS
        ):
            self._refuse("a report without five valid ports")
            return None
        return Report(
            job_id=str(data.get("job_id", "")),
            node=str(data.get("node", "")),
            address=str(data.get("address", "")),
            pid=int(data.get("pid", 0)),
            ports={name: int(ports[name]) for name in PORT_FIELDS},
        )

    def _refuse(self, what: str) -> None:
        if not self._warned:  # once: a flood of garbage must not flood the log
            self._warned = True
            log.warning("kernel %s: ignored %s on the callback port", self.kernel_id, what)
