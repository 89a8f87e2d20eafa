"""Kernel servers side by side: kernelyard serve, jupyter_server and jupyter-kernel-gateway.

Each server runs in its own process on 127.0.0.1 with its default settings (as
users get them) and a token; all three see the same two kernelspecs, ``kernelyard``
(our kernel) and ``python3`` (ipykernel), written into a private
``JUPYTER_DATA_DIR``. One client, in this process, drives all three the same
way: httpx for starts, a raw keep-alive HTTP/1.1 loop for the request rate, the
``websockets`` package for the kernel WebSocket (offering permessage-deflate, as
browsers do). Rounds rotate which server goes first.

* POST -> ready: ``POST /api/kernels``, open the WebSocket, ``kernel_info_request``
  until its reply (what JupyterLab waits for before it shows a kernel as ready).
  Twice: the first kernel right after the server answered (kernelyard's fork
  server is still importing then, so that kernel is spawned), and the median of
  the STARTS_AFTER starts after it, each shut down before the next; and how long the
  POST itself took in those (kernelyard answers while the kernel starts).
* round trip: ``execute_request`` of ``pass`` to its ``execute_reply``, in the legacy
  JSON framing and in ``v1.kernel.websocket.jupyter.org`` (median of TRIPS each).
* 20,000 flushed prints: ``print(i, flush=True)`` until the execute's idle status;
  every line counted and checked in order. A server that never sends the idle is
  given up on after FLOOD_QUIET seconds without a message (noted).
* 20 concurrent starts: 20 POST -> ready at once, until the last is ready.
* 50 clients x 100 executes on 5 kernels: 10 WebSockets per kernel, each sending
  100 ``execute_request`` one after the other; executes per second overall.
* GET /api/kernels: requests per second over 4 keep-alive connections for
  RATE_SECONDS, with the 5 kernels of the previous step running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from kernelyard.discovery import install_kernelspec
from kernelyard.wire import (
    V1_SUBPROTOCOL,
    Channel,
    Message,
    MessageFactory,
    from_legacy,
    from_v1,
    to_legacy,
    to_v1,
)

from .harness import min_med_max

SERVERS = ("kernelyard", "jupyter_server", "kernel_gateway")
KERNELS = {"kernelyard": "kernelyard", "ipykernel": "python3"}  # label -> kernelspec name
TOKEN = uuid.uuid4().hex
TRIPS = 100
FLUSHED = 20_000
FLOOD_QUIET = 10.0
STARTS = 20
STARTS_AFTER = 5
LOAD_KERNELS, LOAD_CLIENTS, LOAD_EXECUTES = 5, 50, 100
RATE_SECONDS, RATE_CONNECTIONS = 2.0, 4


@dataclass
class Metric:
    name: str
    unit: str
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, server: str, kernel: str, value: float) -> None:
        self.values.setdefault((server, kernel), []).append(value)

    def note(self, server: str, kernel: str, text: str) -> None:
        self.notes.setdefault((server, kernel), []).append(text)


# -- the servers ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _argv(server: str, home: Path, port: int) -> list[str]:
    py = sys.executable
    if server == "kernelyard":
        return [py, "-m", "kernelyard", "serve", "--port", str(port), "--token", TOKEN]
    if server == "jupyter_server":
        return [
            py,
            "-m",
            "jupyter_server",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={home}",
            "--allow-root",  # refuses to start as root otherwise (CI containers)
        ]
    return [
        py,
        "-m",
        "kernel_gateway",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0",
        f"--KernelGatewayApp.auth_token={TOKEN}",
        "--JupyterWebsocketPersonality.list_kernels=True",  # GET /api/kernels is 403 otherwise
    ]


def _environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_PATH=str(home / "data"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    env.pop("JUPYTER_TOKEN", None)
    return env


def _write_kernelspecs(home: Path) -> None:
    kernels = home / "data" / "kernels"
    install_kernelspec(kernels)
    python3 = kernels / "python3"
    python3.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    (python3 / "kernel.json").write_bytes(orjson.dumps(spec))


@dataclass
class Running:
    name: str
    url: str  # http://127.0.0.1:PORT/

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"token {TOKEN}"}, timeout=120
        )


@contextlib.asynccontextmanager
async def _running(
    server: str, home: Path, *, extra: tuple[str, ...] = (), name: str | None = None
) -> AsyncIterator[Running]:
    """``server`` started with its defaults plus ``extra`` arguments; ``name`` labels it."""
    port = _free_port()
    name = name or server
    with (home / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [*_argv(server, home, port), *extra],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=_environment(home),
            cwd=home,
        )
    running = Running(name, f"http://127.0.0.1:{port}/")
    try:
        async with running.http() as http:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited: see {home / (name + '.log')}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("api/kernelspecs")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer within 60 s")
                await asyncio.sleep(0.1)
        yield running
    finally:
        process.send_signal(signal.SIGINT if server != "kernelyard" else signal.SIGTERM)
        if server == "jupyter_server":
            # jupyter_server asks for confirmation on the first SIGINT; a second one stops it.
            await asyncio.sleep(0.2)
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), 60)
        except TimeoutError:
            process.kill()
            process.wait()


# -- the kernel WebSocket client --------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class KernelSocket:
    """One kernel WebSocket in either framing; keeps the messages nobody asked for."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.v1 = ws.subprotocol == V1_SUBPROTOCOL
        self.factory = MessageFactory(session=uuid.uuid4().hex, clock=_now)

    async def send(self, msg_type: str, content: dict[str, Any]) -> str:
        msg = self.factory.message(msg_type, content, channel=Channel.SHELL)
        await self.ws.send(to_v1(msg) if self.v1 else to_legacy(msg))
        return msg.msg_id

    async def receive(self) -> Message:
        data = await self.ws.recv()
        if self.v1:
            assert isinstance(data, bytes)
            return from_v1(data)
        return from_legacy(data)

    async def reply_to(self, msg_id: str) -> Message:
        while True:
            msg = await self.receive()
            if msg.channel is Channel.SHELL and msg.parent_header.get("msg_id") == msg_id:
                return msg

    async def execute(self, code: str) -> Message:
        return await self.reply_to(await self.send("execute_request", _execute(code)))


def _execute(code: str) -> dict[str, Any]:
    return {"code": code, "silent": False, "store_history": True, "allow_stdin": False}


@contextlib.asynccontextmanager
async def _socket(running: Running, kernel_id: str, *, v1: bool) -> AsyncIterator[KernelSocket]:
    url = f"{running.ws_url}api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
    async with websockets.connect(
        url,
        subprotocols=[V1_SUBPROTOCOL] if v1 else None,  # type: ignore[list-item]
        additional_headers={"Authorization": f"token {TOKEN}"},
        max_size=None,
        # Unbounded: a client with unread messages (other clients' IOPub) would stop
        # reading its socket and then wait out close_timeout in the closing handshake.
        max_queue=None,
        open_timeout=60,
    ) as ws:
        yield KernelSocket(ws)


async def _start(
    running: Running, http: httpx.AsyncClient, spec: str, posted: list[float] | None = None
) -> str:
    """POST a kernel and wait for its kernel_info reply over the WebSocket; returns its id.
    ``posted`` gets the seconds the POST itself took.
    """
    started = time.perf_counter()
    response = await http.post("api/kernels", json={"name": spec})
    if posted is not None:
        posted.append(time.perf_counter() - started)
    if response.status_code != 201:
        raise RuntimeError(f"{running.name}: POST /api/kernels -> {response.status_code}")
    kernel_id: str = response.json()["id"]
    async with _socket(running, kernel_id, v1=False) as ks:
        await ks.reply_to(await ks.send("kernel_info_request", {}))
    return kernel_id


async def _stop(http: httpx.AsyncClient, kernel_ids: list[str]) -> None:
    await asyncio.gather(*(http.delete(f"api/kernels/{k}") for k in kernel_ids))


async def _timed(step: Callable[[], Awaitable[object]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await step()
    return time.perf_counter() - started, result


# -- the measurements -------------------------------------------------------------------


async def _start_and_trips(
    running: Running, http: httpx.AsyncClient, label: str, metrics: dict[str, Metric]
) -> str:
    seconds, kernel_id = await _timed(lambda: _start(running, http, KERNELS[label]))
    metrics["start"].add(running.name, label, seconds)
    later: list[float] = []
    posted: list[float] = []
    for _ in range(STARTS_AFTER):
        took, other = await _timed(lambda: _start(running, http, KERNELS[label], posted))
        later.append(took)
        await _stop(http, [other])
    metrics["start_later"].add(running.name, label, statistics.median(later))
    metrics["post"].add(running.name, label, statistics.median(posted))
    for key, v1 in (("trip_legacy", False), ("trip_v1", True)):
        async with _socket(running, kernel_id, v1=v1) as ks:
            if v1 and not ks.v1:
                metrics[key].note(running.name, label, "v1 not offered back: legacy used")
            await ks.execute("pass")
            trips = [(await _timed(lambda ks=ks: ks.execute("pass")))[0] for _ in range(TRIPS)]
        metrics[key].add(running.name, label, statistics.median(trips))
    return kernel_id


async def _flood(running: Running, kernel_id: str, label: str, metric: Metric) -> None:
    code = f"for i in range({FLUSHED}):\n    print(i, flush=True)"
    async with _socket(running, kernel_id, v1=False) as ks:
        started = time.perf_counter()
        msg_id = await ks.send("execute_request", _execute(code))
        chunks: list[str] = []
        idle = False
        last = started
        while not idle:
            try:
                msg = await asyncio.wait_for(ks.receive(), FLOOD_QUIET)
            except TimeoutError:
                break
            last = time.perf_counter()
            if msg.parent_header.get("msg_id") != msg_id:
                continue
            if msg.msg_type == "stream":
                chunks.append(msg.content["text"])
            elif msg.msg_type == "status" and msg.content["execution_state"] == "idle":
                idle = True
        metric.add(running.name, label, last - started)
        got = "".join(chunks)
        if not idle:
            metric.note(running.name, label, f"no idle status after {FLOOD_QUIET:.0f} s quiet")
        if got != "".join(f"{i}\n" for i in range(FLUSHED)):
            arrived = got.count("\n")
            metric.note(running.name, label, f"{arrived:,} of {FLUSHED:,} lines arrived")


async def _concurrent_starts(
    running: Running, http: httpx.AsyncClient, label: str, metric: Metric
) -> None:
    started = time.perf_counter()
    results = await asyncio.gather(
        *(asyncio.wait_for(_start(running, http, KERNELS[label]), 120) for _ in range(STARTS)),
        return_exceptions=True,
    )
    metric.add(running.name, label, time.perf_counter() - started)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        metric.note(running.name, label, f"{len(failed)} of {STARTS} starts failed: {failed[0]!r}")
    await _stop(http, [r for r in results if isinstance(r, str)])


async def _load(running: Running, kernel_ids: list[str], label: str, metric: Metric) -> None:
    errors: list[str] = []
    finished: list[float] = []

    async def client(kernel_id: str, ready: asyncio.Event) -> None:
        async with _socket(running, kernel_id, v1=False) as ks:
            connected.release()
            await ready.wait()
            for _ in range(LOAD_EXECUTES):
                reply = await ks.execute("pass")
                if reply.content.get("status") != "ok":
                    errors.append(str(reply.content.get("status")))
            finished.append(time.perf_counter())  # before the closing handshake

    ready = asyncio.Event()
    connected = asyncio.Semaphore(0)
    tasks = [
        asyncio.create_task(client(kernel_ids[i % len(kernel_ids)], ready))
        for i in range(LOAD_CLIENTS)
    ]
    for _ in range(LOAD_CLIENTS):  # every socket connected before the clock starts
        await connected.acquire()
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    metric.add(running.name, label, LOAD_CLIENTS * LOAD_EXECUTES / (max(finished) - started))
    if errors:
        metric.note(running.name, label, f"{len(errors)} replies not ok")


async def _get_loop(port: int, deadline: float) -> int:
    """GET /api/kernels over one keep-alive connection until ``deadline``; returns the count."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET /api/kernels HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: token {TOKEN}\r\n\r\n"
    ).encode()
    count = 0
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"GET /api/kernels: {head[:40]!r}")
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if match is None:
                raise RuntimeError("GET /api/kernels: no Content-Length")
            await reader.readexactly(int(match.group(1)))
            count += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return count


async def _request_rate(running: Running, label: str, metric: Metric) -> None:
    port = int(running.url.rsplit(":", 1)[1].strip("/"))
    deadline = time.perf_counter() + RATE_SECONDS
    started = time.perf_counter()
    counts = await asyncio.gather(*(_get_loop(port, deadline) for _ in range(RATE_CONNECTIONS)))
    metric.add(running.name, label, sum(counts) / (time.perf_counter() - started))


async def _one_server(server: str, home: Path, metrics: dict[str, Metric]) -> None:
    async with _running(server, home) as running, running.http() as http:
        for label in KERNELS:
            print(f"  {server} on {label}", file=sys.stderr, flush=True)
            kernel_id = await _start_and_trips(running, http, label, metrics)
            await _flood(running, kernel_id, label, metrics["flood"])
            await _stop(http, [kernel_id])
            await _concurrent_starts(running, http, label, metrics["starts"])
            load_ids = list(
                await asyncio.gather(
                    *(_start(running, http, KERNELS[label]) for _ in range(LOAD_KERNELS))
                )
            )
            await _load(running, load_ids, label, metrics["load"])
            await _request_rate(running, label, metrics["rate"])
            await _stop(http, load_ids)
            print(report(list(metrics.values())), file=sys.stderr, flush=True)


def _metrics() -> dict[str, Metric]:
    return {
        "start": Metric("POST -> ready, first kernel", "ms"),
        "start_later": Metric(f"POST -> ready, later kernels (median of {STARTS_AFTER})", "ms"),
        "post": Metric(f"POST answered, later kernels (median of {STARTS_AFTER})", "ms"),
        "trip_legacy": Metric(f"round trip `pass`, legacy JSON (median of {TRIPS})", "ms"),
        "trip_v1": Metric(f"round trip `pass`, v1 binary (median of {TRIPS})", "ms"),
        "flood": Metric(f"{FLUSHED:,} flushed prints to idle", "s"),
        "starts": Metric(f"{STARTS} concurrent starts, all ready", "s"),
        "load": Metric(
            f"{LOAD_CLIENTS} clients x {LOAD_EXECUTES} executes on {LOAD_KERNELS} kernels",
            "executes/s",
        ),
        "rate": Metric("GET /api/kernels", "req/s"),
    }


async def run(rounds: int = 2) -> list[Metric]:
    metrics = _metrics()
    # Kernels a reference server leaves behind may still write their profile as it goes.
    with TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        home = Path(tmp)
        _write_kernelspecs(home)
        for r in range(rounds):
            for server in SERVERS[r % len(SERVERS) :] + SERVERS[: r % len(SERVERS)]:
                await _one_server(server, home, metrics)
    return list(metrics.values())


def ratio(medians: dict[str, float], ours: str, other: str, higher_is_better: bool) -> str:
    """How many times better column ``ours`` is than ``other``; '-' while either is
    unmeasured.
    """
    mine, theirs = medians[ours], medians[other]
    value = mine / theirs if higher_is_better else theirs / mine
    return "-" if value != value else f"{value:.1f}x"  # NaN != NaN


def row(
    metric: Metric, columns: tuple[str, ...], label: str
) -> tuple[list[str], dict[str, float], str]:
    """For one label of ``metric``: each column's min/med/max cell, the medians, the notes."""
    scale = 1e3 if metric.unit == "ms" else 1.0
    cells, medians = [], {}
    for column in columns:
        values = metric.values.get((column, label), [])
        medians[column] = statistics.median(values) if values else float("nan")
        cells.append(min_med_max(values, scale) if values else "-")
    notes = "; ".join(
        f"{column}: {text}"
        for column in columns
        for text in dict.fromkeys(metric.notes.get((column, label), []))
    )
    return cells, medians, notes


def report(results: list[Metric]) -> str:
    """One row per benchmark and kernel; ratios are how many times better ours is (median)."""
    lines = [
        "| benchmark | kernel | "
        + " | ".join(f"{s} (min/med/max)" for s in SERVERS)
        + " | ours vs jupyter_server | ours vs kernel_gateway | notes |",
        "|---|---|" + "---|" * (len(SERVERS) + 3),
    ]
    for metric in results:
        higher_is_better = metric.unit.endswith("/s")
        for label in KERNELS:
            cells, medians, notes = row(metric, SERVERS, label)
            lines.append(
                f"| {metric.name} ({metric.unit}) | {label} | "
                + " | ".join(cells)
                + f" | {ratio(medians, 'kernelyard', 'jupyter_server', higher_is_better)}"
                + f" | {ratio(medians, 'kernelyard', 'kernel_gateway', higher_is_better)}"
                + f" | {notes} |"
            )
    return "\n".join(lines)
