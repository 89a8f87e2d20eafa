"""Real server processes for tests: ``kernelyard serve`` (also in gateway mode),
jupyter_server, and any server answering on a port we chose (Kernel Gateway,
Enterprise Gateway). The WebSocket client is ``tests/wsclient.py``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..wsclient import KernelSocket, kernel_socket, settled_model, start_kernel, stream_text

__all__ = [
    "TOKEN",
    "KernelSocket",
    "Server",
    "free_port",
    "gateway_front",
    "kernel_socket",
    "running_jupyter_server",
    "running_on_port",
    "running_server",
    "server_env",
    "settled_model",
    "start_kernel",
    "stream_text",
]

TOKEN = "test-token"


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT/
    process: subprocess.Popen[str]
    token: str = TOKEN
    log: deque[str] = field(default_factory=lambda: deque(maxlen=500))  # its stderr, last lines

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=60
        )


def server_env(home: Path) -> dict[str, str]:
    """An environment whose Jupyter paths are private to the test."""
    env = dict(os.environ)
    env.update(
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        # A crash in native code (libzmq, a C extension) then leaves a traceback in the log.
        PYTHONFAULTHANDLER="1",
    )
    env.pop("JUPYTER_TOKEN", None)
    return env


@contextmanager
def running_server(home: Path, *args: str, token: str | None = TOKEN) -> Iterator[Server]:
    """Start ``kernelyard serve`` on a random port; stop it (SIGTERM) and check it exits."""
    argv = [sys.executable, "-m", "kernelyard", "serve", "--port", "0", "--root-dir", str(home)]
    argv += ["--token", token] if token is not None else ["--no-token"]
    process = subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(home),
    )
    log: deque[str] = deque(maxlen=500)
    # Read its stderr all along: kernels write there too, and a full pipe would
    # block the server's event loop on its next log line.
    drain = threading.Thread(target=log.extend, args=(process.stderr,), daemon=True)
    drain.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if match is None:
            process.kill()
            process.wait()
            drain.join(5)
            raise AssertionError(f"the server did not start: {line!r} {''.join(log)[-2000:]}")
        yield Server(match.group(1), process, token or "", log)
    finally:
        died = process.poll()  # no test stops the server itself: an exit now is a fault
        stopped = died is not None or _stop(process)
        drain.join(5)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
        tail = "".join(log)[-4000:]
        if died is not None:
            raise AssertionError(f"the server exited by itself (code {died}):\n{tail}")
        if not stopped:
            raise AssertionError(f"the server did not stop within 30 s of SIGTERM:\n{tail}")


@contextmanager
def gateway_front(home: Path, upstream: Server) -> Iterator[Server]:
    """``kernelyard serve`` in gateway mode in front of ``upstream`` (its files in ``home``)."""
    home.mkdir()
    gateway = ["--gateway-url", upstream.url.rstrip("/"), "--gateway-auth-token", upstream.token]
    with running_server(home, *gateway) as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_on_port(
    argv: list[str], env: dict[str, str], port: int, token: str, *, name: str
) -> Iterator[Server]:
    """Run ``argv``, a server told to listen on 127.0.0.1:``port``, until it answers
    ``GET /api/kernelspecs`` with ``token`` (within 60 s); stop it (SIGTERM) at the end.
    """
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stderr is not None
    server = Server(f"http://127.0.0.1:{port}/", process, token)
    drain = threading.Thread(target=server.log.extend, args=(process.stderr,), daemon=True)
    drain.start()
    try:
        deadline = time.monotonic() + 60
        auth = {"Authorization": f"token {token}"}
        while True:
            try:
                if httpx.get(server.url + "api/kernelspecs", headers=auth, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start:\n" + "".join(server.log))
            time.sleep(0.1)
        yield server
    finally:
        _stop(process)
        drain.join(5)
        process.stderr.close()


def _stop(process: subprocess.Popen[str]) -> bool:
    """SIGTERM, then SIGKILL after 30 s; whether it stopped on SIGTERM."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


@contextmanager
def running_jupyter_server(home: Path, *args: str, token: str) -> Iterator[Server]:
    """Start jupyter_server on a random port (``args``: more of its options); stop it."""
    argv = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--port=0",
        "--ip=127.0.0.1",
        "--no-browser",
        "--allow-root",
        f"--ServerApp.root_dir={home}",
        f"--IdentityProvider.token={token}",
        *args,
    ]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=server_env(home)
    )
    assert process.stderr is not None
    url = None
    lines = []
    for line in process.stderr:
        lines.append(line)
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if match:
            url = match.group(1)
            break
    if url is None:
        process.kill()
        process.wait()
        process.stderr.close()
        raise AssertionError("jupyter_server did not start:\n" + "".join(lines[-30:]))
    server = Server(url, process, token)
    # Keep reading its log so the pipe never fills and blocks the server.
    drain = threading.Thread(target=server.log.extend, args=(process.stderr,), daemon=True)
    drain.start()
    try:
        yield server
    finally:
        _stop(process)
        drain.join(5)
        process.stderr.close()
