"""``kernelyard serve --gateway-url`` against real upstreams, with real peers in front.

Upstreams, each a process on 127.0.0.1: ``kernelyard serve`` and
jupyter-kernel-gateway (listing on). In front of our gateway mode: the test's
WebSocket client in both framings, and jupyter_server's own gateway client
(``--gateway-url`` pointed at us). Every path runs the same scenario as the
direct tests of our server (kernelspecs, start, execute, interrupt, restart,
delete), and the upstream is left with no kernel of ours.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kernelyard.discovery import install_kernelspec

from .serverutil import (
    Server,
    free_port,
    gateway_front,
    kernel_socket,
    running_on_port,
    running_server,
    server_env,
    stream_text,
)
from .test_server_gateway_peer import jupyter_server, scenario

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(180)]

__all__ = ["jupyter_server"]  # a fixture, used below through ``ours``

KG_TOKEN = "kg-token"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-mode")


@pytest.fixture(scope="module")
def upstream(home: Path) -> Iterator[Server]:
    (home / "up").mkdir()
    with running_server(home / "up") as server:
        yield server


@pytest.fixture(scope="module")
def ours(home: Path, upstream: Server) -> Iterator[Server]:
    """Our server in gateway mode, in front of ``upstream``."""
    with gateway_front(home / "front", upstream) as server:
        yield server


@pytest.fixture(scope="module")
def kernel_gateway(home: Path) -> Iterator[Server]:
    kg_home = home / "kg"
    install_kernelspec(kg_home / "data" / "kernels")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "kernel_gateway",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0",
        f"--KernelGatewayApp.auth_token={KG_TOKEN}",
        "--JupyterWebsocketPersonality.list_kernels=True",
    ]
    env = server_env(kg_home)
    env["JUPYTER_PATH"] = str(kg_home / "data")
    with running_on_port(argv, env, port, KG_TOKEN, name="kernel_gateway") as server:
        yield server


async def _remote_kernels(server: Server) -> list[object]:
    async with server.http() as http:
        listed: list[object] = (await http.get("api/kernels")).json()
        return listed


@pytest.mark.parametrize("v1", [False, True], ids=["legacy", "v1"])
async def test_in_front_of_kernelyard(ours: Server, upstream: Server, v1: bool) -> None:
    try:
        await scenario(ours, v1=v1)
    except BaseException:
        print("--- front ---", *ours.log, "--- upstream ---", *upstream.log)
        raise
    assert await _remote_kernels(upstream) == []


async def test_jupyter_servers_gateway_client_in_front_of_ours(
    jupyter_server: Server, ours: Server, upstream: Server
) -> None:
    """jupyter_server -> kernelyard (gateway mode) -> kernelyard: two gateway hops."""
    try:
        await scenario(jupyter_server, v1=False)
    except BaseException:
        print("--- jupyter_server ---", *jupyter_server.log, "--- front ---", *ours.log)
        raise
    assert await _remote_kernels(upstream) == []


async def test_in_front_of_kernel_gateway(home: Path, kernel_gateway: Server) -> None:
    """Kernelspecs, start, execute, interrupt, restart and delete through us to Kernel
    Gateway.
    """
    front_home = home / "front-kg"
    front_home.mkdir()
    gateway = ["--gateway-url", kernel_gateway.url.rstrip("/"), "--gateway-auth-token", KG_TOKEN]
    with running_server(front_home, *gateway) as front:
        try:
            await _resources_come_through_us(front, kernel_gateway, "python3")
            await _start_execute_interrupt_restart_delete(front, "python3")
        except BaseException:
            print("--- front ---", *front.log, "--- kernel_gateway ---", *kernel_gateway.log)
            raise
    assert await _remote_kernels(kernel_gateway) == []


async def _resources_come_through_us(front: Server, upstream: Server, kernel: str) -> None:
    """The kernelspec's resource URLs point at the front, which serves the gateway's bytes."""
    async with front.http() as http, upstream.http() as remote:
        specs = (await http.get("api/kernelspecs")).json()
        resources = specs["kernelspecs"][kernel]["resources"]
        assert resources, "the gateway's kernelspec has resources"
        for url in resources.values():
            assert url.startswith(f"/kernelspecs/{kernel}/"), url
            ours = await http.get(url.lstrip("/"))
            theirs = await remote.get(url.lstrip("/"))
            assert ours.status_code == theirs.status_code == 200, url
            assert ours.content == theirs.content
        missing = await http.get(f"kernelspecs/{kernel}/no-such-file.png")
        assert missing.status_code == 404
        assert missing.json()["message"]


async def _start_execute_interrupt_restart_delete(server: Server, kernel: str) -> None:
    async with server.http() as http:
        specs = (await http.get("api/kernelspecs")).json()
        assert kernel in specs["kernelspecs"]
        started = await http.post("api/kernels", json={"name": kernel})
        assert started.status_code == 201, started.text
        kid = started.json()["id"]
        async with kernel_socket(server, kid) as ws:
            reply, outputs = await ws.execute("print('via', 'kg')")
            assert reply.content["status"] == "ok"
            assert stream_text(outputs) == "via kg\n"
            running = ws.message(
                "execute_request", {"code": "import time\nprint('go', flush=True)\ntime.sleep(30)"}
            )
            await ws.send(running)
            with anyio.fail_after(20):
                while (await ws.receive()).msg_type != "stream":
                    pass
            assert (await http.post(f"api/kernels/{kid}/interrupt")).status_code == 204
            with anyio.fail_after(20):
                while (msg := await ws.receive()).msg_type != "execute_reply":
                    pass
            assert msg.content["ename"] == "KeyboardInterrupt"
            assert (await http.post(f"api/kernels/{kid}/restart")).status_code == 200
            reply, outputs = await ws.execute("print('after', 'restart')")
            assert reply.content["status"] == "ok"
            assert stream_text(outputs) == "after restart\n"
        assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
        assert (await http.get(f"api/kernels/{kid}")).status_code == 404


def test_a_bad_setting_stops_the_server_at_start(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    env["JUPYTER_GATEWAY_URL"] = "http://127.0.0.1:9"
    env["JUPYTER_GATEWAY_RETRY_MAX"] = "many"
    done = subprocess.run(
        [sys.executable, "-m", "kernelyard", "serve", "--port", "0", "--no-token"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "gateway setting retry_max='many' (JUPYTER_GATEWAY_RETRY_MAX) must be a number" in (
        done.stderr
    )
