"""Compatibility: jupyter_server with ``--gateway-url`` pointed at our server.

One scenario (kernelspecs, start, execute over the WebSocket, interrupt,
restart, delete) runs three ways: through jupyter_server's gateway client
(legacy framing, as that client forces), and directly against our server in
both framings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from .serverutil import Server, kernel_socket, running_jupyter_server, running_server, stream_text

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(180)]

PEER_TOKEN = "peer-token"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="module")
def ours(home: Path) -> Iterator[Server]:
    with running_server(home) as server:
        yield server


@pytest.fixture(scope="module")
def jupyter_server(home: Path, ours: Server) -> Iterator[Server]:
    peer_home = home / "peer"
    peer_home.mkdir()
    gateway = [
        f"--GatewayClient.url={ours.url.rstrip('/')}",
        f"--GatewayClient.auth_token={ours.token}",
        "--GatewayClient.request_timeout=60",
    ]
    with running_jupyter_server(peer_home, *gateway, token=PEER_TOKEN) as peer:
        yield peer


async def scenario(server: Server, *, v1: bool, kernel: str = "kernelyard") -> None:
    async with server.http() as http:
        specs = (await http.get("api/kernelspecs")).json()
        assert kernel in specs["kernelspecs"]
        started = await http.post("api/kernels", json={"name": kernel})
        assert started.status_code == 201, started.text
        kid = started.json()["id"]
        model = (await http.get(f"api/kernels/{kid}")).json()
        assert model["name"] == kernel
        async with kernel_socket(server, kid, v1=v1) as ws:
            reply, outputs = await ws.execute("print('through', 'the gateway'); 2 ** 10")
            assert reply.content["status"] == "ok"
            assert stream_text(outputs) == "through the gateway\n"
            running = ws.message(
                "execute_request", {"code": "import time\nprint('go', flush=True)\ntime.sleep(30)"}
            )
            await ws.send(running)
            with anyio.fail_after(20):
                while (await ws.receive()).msg_type != "stream":
                    pass
            assert (await http.post(f"api/kernels/{kid}/interrupt")).status_code == 204
            with anyio.fail_after(20):
                while True:
                    msg = await ws.receive()
                    if msg.msg_type == "execute_reply":
                        break
            assert msg.content["ename"] == "KeyboardInterrupt"
        restarted = await http.post(f"api/kernels/{kid}/restart")
        assert restarted.status_code == 200
        async with kernel_socket(server, kid, v1=v1) as ws:
            reply, _ = await ws.execute("'after restart'")
            assert reply.content["status"] == "ok"
        assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
        assert (await http.get(f"api/kernels/{kid}")).status_code == 404


async def test_through_jupyter_servers_gateway_client(jupyter_server: Server, ours: Server) -> None:
    try:
        await scenario(jupyter_server, v1=False)
    except BaseException:  # show both servers' last log lines with the failure
        print("--- jupyter_server ---", *jupyter_server.log, "--- kernelyard ---", *ours.log)
        raise
    async with ours.http() as http:
        assert (await http.get("api/kernels")).json() == []


@pytest.mark.parametrize("v1", [False, True], ids=["legacy", "v1"])
async def test_directly_against_our_server(ours: Server, v1: bool) -> None:
    await scenario(ours, v1=v1)
