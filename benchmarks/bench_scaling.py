"""How many kernels one server holds: kernelyard serve and jupyter_server, side by side.

Each server is started as a user gets it (see :mod:`.bench_server`), with our
kernel (``kernelyard``, the quickest to start and the lightest, so that the
server's own cost shows), and grown in STEPS: kernels are started until the
step's count, each with one open WebSocket that reads everything (as an open
notebook tab). At each step, with every kernel idle and connected:

* round trip: ``execute_request`` of ``pass`` to its reply, TRIPS in turn over
  SAMPLED kernels spread across all of them (median);
* the POST of one more kernel (answered, then ready), deleted again;
* the server's resident memory (its own process, not the kernels'), and the
  kernels' (their sum), from ``/proc`` through psutil.

The question is where the server, not the machine, starts to cost: a round
trip that grows with the kernel count, or memory per kernel that is not flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import psutil

from .bench_server import Running, _running, _socket, _start, _write_kernelspecs
from .harness import min_med_max

SERVERS = ("kernelyard", "jupyter_server")
STEPS = (1, 50, 100, 200, 300)
TRIPS = 60
SAMPLED = 6
KERNEL = "kernelyard"


def _server_pid(running: Running, port: int) -> psutil.Process:
    """The process listening on ``port`` (the server itself)."""
    for connection in psutil.net_connections("tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
            assert connection.pid is not None
            return psutil.Process(connection.pid)
    raise RuntimeError(f"{running.name}: nothing listens on port {port}")


def _memory(server: psutil.Process) -> tuple[float, float]:
    """MiB resident: the server's own, and its kernels' (every descendant) summed."""
    own = server.memory_info().rss / 2**20
    kernels = 0.0
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            kernels += child.memory_info().rss / 2**20
    return own, kernels


@contextlib.asynccontextmanager
async def _reader(running: Running, kernel_id: str) -> AsyncIterator[None]:
    """One open WebSocket on the kernel that reads whatever comes, for the block."""
    async with _socket(running, kernel_id, v1=True) as ks:

        async def drain() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await ks.receive()

        task = asyncio.create_task(drain())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _trips(running: Running, kernel_ids: list[str]) -> float:
    """Median round trip over SAMPLED kernels spread across ``kernel_ids``."""
    stride = max(1, len(kernel_ids) // SAMPLED)
    chosen = kernel_ids[::stride][:SAMPLED]
    times: list[float] = []
    sockets = [_socket(running, k, v1=True) for k in chosen]
    async with contextlib.AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(s) for s in sockets]
        for ks in opened:
            await ks.execute("pass")
        for i in range(TRIPS):
            ks = opened[i % len(opened)]
            started = time.perf_counter()
            await ks.execute("pass")
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _one_server(
    server: str,
    home: Path,
    rows: dict[tuple[str, int], dict[str, float]],
    notes: dict[str, str],
) -> None:
    name = f"{server}-scaling"
    async with _running(server, home, name=name) as running, running.http() as http:
        port = int(running.url.rsplit(":", 1)[1].strip("/"))
        process = _server_pid(running, port)
        kernel_ids: list[str] = []
        async with contextlib.AsyncExitStack() as readers:
            for step in STEPS:
                try:
                    await _grow(running, http, readers, kernel_ids, step)
                except Exception as exc:  # the server's limit: say where, and stop growing
                    notes[server] = (
                        f"no more kernels past {len(kernel_ids)}: {exc}{_why(home, name)}"
                    )
                    print(f"  {server}: {notes[server]}", file=sys.stderr)
                    break
                await asyncio.sleep(1.0)  # let the starts settle: idle kernels only
                posted: list[float] = []
                begun = time.perf_counter()
                extra = await _start(running, http, KERNEL, posted)
                ready = time.perf_counter() - begun
                await http.delete(f"api/kernels/{extra}")
                trip = await _trips(running, kernel_ids)
                own, kernels = _memory(process)
                rows[(server, step)] = {
                    "trip": trip,
                    "post": posted[0],
                    "ready": ready,
                    "server_mib": own,
                    "kernels_mib": kernels,
                }
                print(f"  {server} {step} kernels: {rows[(server, step)]}", file=sys.stderr)
        await asyncio.gather(
            *(http.delete(f"api/kernels/{k}") for k in kernel_ids), return_exceptions=True
        )


async def _grow(
    running: Running,
    http: httpx.AsyncClient,
    readers: contextlib.AsyncExitStack,
    kernel_ids: list[str],
    step: int,
) -> None:
    """Start kernels, five at a time, each with its reader, until ``step`` run."""
    while len(kernel_ids) < step:
        batch = min(5, step - len(kernel_ids))
        started = await asyncio.gather(
            *(_start(running, http, KERNEL) for _ in range(batch)), return_exceptions=True
        )
        for item in started:  # those that started are kept (and stopped) either way
            if isinstance(item, str):
                await readers.enter_async_context(_reader(running, item))
                kernel_ids.append(item)
        for item in started:
            if isinstance(item, BaseException):
                raise item


def _why(home: Path, name: str) -> str:
    """The server log's last line that names an error, if any (its own words)."""
    try:
        lines = (home / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return f" (its log: {line.strip()[:160]})"
    return ""


async def run(rounds: int = 1) -> tuple[dict[tuple[str, int], list[dict[str, float]]], list[str]]:
    """Every server grown through STEPS ``rounds`` times; the rows of each round, and
    where a server could hold no more.
    """
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    notes: list[str] = []
    with TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        home = Path(tmp)
        _write_kernelspecs(home)
        for r in range(rounds):
            for server in SERVERS[r % 2 :] + SERVERS[: r % 2]:
                rows: dict[tuple[str, int], dict[str, float]] = {}
                stopped: dict[str, str] = {}
                await _one_server(server, home, rows, stopped)
                notes += [f"{s}: {text}" for s, text in stopped.items()]
                for key, value in rows.items():
                    results.setdefault(key, []).append(value)
    return results, notes


def report(measured: tuple[dict[tuple[str, int], list[dict[str, float]]], list[str]]) -> str:
    """One row per server and step: min/med/max over rounds; then the notes."""
    results, notes = measured
    columns = [
        ("trip", "round trip `pass` (ms)", 1e3),
        ("post", "POST answered (ms)", 1e3),
        ("ready", "POST -> ready (ms)", 1e3),
        ("server_mib", "server RSS (MiB)", 1.0),
        ("kernels_mib", "kernels' RSS, sum (MiB)", 1.0),
    ]
    lines = [
        "| server | kernels | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for server in SERVERS:
        for step in STEPS:
            rows = results.get((server, step), [])
            if not rows:
                continue
            cells = [min_med_max([r[key] for r in rows], scale) for key, _, scale in columns]
            lines.append(f"| {server} | {step} | " + " | ".join(cells) + " |")
    for server in SERVERS:
        reached = [step for step in STEPS if results.get((server, step))]
        if len(reached) >= 2:
            low, high = (
                statistics.median(r["server_mib"] for r in results[(server, step)])
                for step in (reached[0], reached[-1])
            )
            per = (high - low) / (reached[-1] - reached[0])
            lines.append(
                f"\n{server}: {per:.2f} MiB of server memory per kernel added "
                f"({reached[0]} to {reached[-1]} kernels)"
            )
    lines += [f"\n{note}" for note in notes]
    return "\n".join(lines)
