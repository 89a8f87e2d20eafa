"""kernelyard serve in front of a gateway (in process): the same API, and the faults.

Upstream: a kernelyard server on a FakeBackend, reached through a CutProxy so a
test can cut the connection. Front: a kernelyard server on a GatewayBackend.
Clients talk to the front with tests/wsclient.py in either framing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from kernelyard.gateway import GatewayBackend, GatewaySettings

from ..server.conftest import Served, serving
from ..server.test_channels import until_closed
from ..wsclient import kernel_socket, stream_text
from .proxy import CutProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

COUNT = "for i in range({n}):\n    print(i)\n    sleep({pause})"


@dataclass
class Chain:
    upstream: Served
    proxy: CutProxy
    front: Served


@asynccontextmanager
async def chain(**knobs: Any) -> AsyncIterator[Chain]:
    async with serving() as upstream:
        port = urlsplit(upstream.url).port
        assert port is not None
        async with CutProxy.running(port) as proxy:
            values: dict[str, Any] = {
                "url": proxy.url,
                "auth_token": upstream.token,
                "retry_interval": 0.05,
                "retry_interval_max": 0.2,
            }
            settings = GatewaySettings(**{**values, **knobs})
            backend = GatewayBackend(settings, environ={})
            async with serving(backend, default_kernel="not-on-the-gateway") as front:
                yield Chain(upstream, proxy, front)


@pytest.mark.parametrize("v1", [False, True], ids=["legacy", "v1"])
async def test_the_same_api_through_the_gateway(v1: bool) -> None:
    async with chain() as c, c.front.http() as http:
        specs = (await http.get("api/kernelspecs")).json()
        assert specs["default"] == "fake"  # the gateway's default replaces ours
        kernel_id = await c.front.start()  # no name: the gateway's default
        assert kernel_id in c.upstream.backend.kernels  # the gateway chose the id
        models = (await http.get("api/kernels")).json()
        assert [m["id"] for m in models] == [kernel_id]
        async with kernel_socket(c.front, kernel_id, v1=v1) as ws:
            reply, outputs = await ws.execute("print('through')")
            assert reply.content["status"] == "ok"
            assert stream_text(outputs) == "through\n"
            complete = ws.message("complete_request", {"code": "pri", "cursor_pos": 3})
            await ws.send(complete)
            with anyio.fail_after(5):
                while (got := await ws.receive()).msg_type != "complete_reply":
                    pass
            assert "print" in got.content["matches"]
        response = await http.post(f"api/kernels/{kernel_id}/restart")
        assert response.status_code == 200, response.text
        response = await http.delete(f"api/kernels/{kernel_id}")
        assert response.status_code == 204
        assert kernel_id not in c.upstream.backend.kernels


async def test_a_cut_loses_no_line_and_duplicates_none() -> None:
    async with chain() as c:
        kernel_id = await c.front.start()
        async with kernel_socket(c.front, kernel_id) as ws:
            request = ws.message("execute_request", {"code": COUNT.format(n=60, pause=0.01)})
            await ws.send(request)
            lines: list[str] = []
            cuts = 0
            with anyio.fail_after(20):
                while True:
                    got = await ws.receive()
                    if got.parent_header.get("msg_id") != request.msg_id:
                        continue
                    if got.msg_type == "stream":
                        lines += got.content["text"].splitlines()
                        if cuts < 2 and len(lines) >= 15 * (cuts + 1):
                            c.proxy.cut()
                            cuts += 1
                    elif got.msg_type == "execute_reply":
                        break
        assert cuts == 2
        assert lines == [str(i) for i in range(60)]


async def test_an_upstream_that_stays_down_ends_in_dead_and_a_close() -> None:
    async with chain(retry_max=2) as c:
        kernel_id = await c.front.start()
        async with kernel_socket(c.front, kernel_id) as ws:
            await ws.execute("x = 1")
            c.proxy.down()
            got, closed = await until_closed(ws)
        states = [m.content["execution_state"] for m in got if m.msg_type == "status"]
        assert states[-1] == "dead"
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "the kernel died")


async def test_a_kernel_given_up_on_comes_back_with_a_restart_by_hand() -> None:
    async with chain(retry_max=1) as c, c.front.http() as http:
        kernel_id = await c.front.start()
        async with kernel_socket(c.front, kernel_id) as ws:
            c.proxy.down()
            await until_closed(ws)
        assert (await http.get(f"api/kernels/{kernel_id}")).json()["execution_state"] == "dead"
        c.proxy.up()
        response = await http.post(f"api/kernels/{kernel_id}/restart")
        assert response.status_code == 200, response.text
        async with kernel_socket(c.front, kernel_id) as ws:
            reply, outputs = await ws.execute("print('back')")
        assert reply.content["status"] == "ok"
        assert stream_text(outputs) == "back\n"


async def test_remote_activity_and_clients_show_in_our_models() -> None:
    """Other clients of the gateway's kernel count; a kernel culled there ends here."""
    async with chain(refresh_interval=0.05) as c, c.front.http() as http:
        kernel_id = await c.front.start()
        before = (await http.get(f"api/kernels/{kernel_id}")).json()
        assert before["connections"] == 0
        async with kernel_socket(c.upstream, kernel_id) as direct:  # not through us
            await direct.execute("x = 1")
            with anyio.fail_after(5):
                while True:
                    model = (await http.get(f"api/kernels/{kernel_id}")).json()
                    if (
                        model["connections"] == 1
                        and model["last_activity"] > before["last_activity"]
                    ):
                        break
                    await anyio.sleep(0.02)
        await c.upstream.backend.shutdown_kernel(kernel_id, reason="culled")
        with anyio.fail_after(5):
            while (await http.get(f"api/kernels/{kernel_id}")).status_code != 404:
                await anyio.sleep(0.02)


async def test_gateway_errors_keep_their_status_and_hop() -> None:
    async with chain() as c, c.front.http() as http:
        c.proxy.down()
        before = c.proxy.accepted
        response = await http.get("api/kernelspecs")
        assert response.status_code == 503
        assert "could not connect to the gateway at" in response.json()["message"]
        assert c.proxy.accepted - before == 3  # a GET is retried twice
        before = c.proxy.accepted
        response = await http.post("api/kernels", json={"name": "fake"})
        assert response.status_code == 503
        assert c.proxy.accepted - before <= 1  # a POST never (the specs are cached)


@pytest.mark.parametrize("v1", [False, True], ids=["legacy", "v1"])
async def test_binary_buffers_cross_the_chain_byte_exact(v1: bool) -> None:
    """An ipywidgets-style comm message with a binary buffer (not UTF-8) arrives intact."""
    blob = bytes(range(256)) * 4
    async with chain() as c:
        kernel_id = await c.front.start()
        async with kernel_socket(c.front, kernel_id, v1=v1) as ws:
            msg = ws.message(
                "comm_msg", {"comm_id": "w1", "data": {"method": "update", "buffer_paths": [["v"]]}}
            )
            msg.buffers = [blob]
            await ws.send(msg)
            await ws.execute("1")  # after the comm message, in order
        kernel = c.upstream.backend.kernels[kernel_id]
        comm = [m for m in kernel.messages if m.msg_type == "comm_msg"]
        assert len(comm) == 1
        assert [bytes(b) for b in comm[0].buffers] == [blob]
