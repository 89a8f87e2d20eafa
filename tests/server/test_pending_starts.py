"""Pending starts: ``POST /api/kernels`` answers while the kernel starts, the WebSocket
waits for it, a failed start ends in the model and on the socket, and the limit
counts starts in flight. In process on a FakeBackend whose starts wait at a gate
(a cluster queue); tests/integration and tests/cluster have the real kernels.
"""

from __future__ import annotations

import signal

import anyio
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from kernelyard.errors import LaunchError
from kernelyard.server.policy import MAX_CLOSE_REASON, close_reason
from kernelyard.testing import FakeBackend
from kernelyard.wire import Channel

from ..wsclient import kernel_socket
from .conftest import Served, serving

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


async def _post(served: Served, **body: object) -> dict[str, object]:
    async with served.http() as http:
        response = await http.post("api/kernels", json=body)
    assert response.status_code == 201, response.text
    model: dict[str, object] = response.json()
    return model


async def _model(served: Served, kernel_id: str) -> dict[str, object]:
    async with served.http() as http:
        response = await http.get(f"api/kernels/{kernel_id}")
    assert response.status_code == 200, response.text
    model: dict[str, object] = response.json()
    return model


async def test_a_start_answers_at_once_and_the_socket_waits_for_the_kernel() -> None:
    backend = FakeBackend()
    backend.start_gate = anyio.Event()
    async with serving(backend) as served:
        model = await _post(served)
        kid = str(model["id"])
        assert model["execution_state"] == "starting"
        with anyio.fail_after(2):  # what the start waits for, in the backend's words
            while (await _model(served, kid)).get("reason") != "waiting for the test's start gate":
                await anyio.sleep(0.01)
        assert backend.kernels == {}  # not started yet: the gate holds it
        async with served.http() as http:
            assert [k["id"] for k in (await http.get("api/kernels")).json()] == [kid]
            assert (await http.get("api/status")).json()["kernels"] == 1
        async with kernel_socket(served, kid) as ws:
            # Sent before the kernel is up: kept, and forwarded once it answers.
            request = ws.message("kernel_info_request")
            await ws.send(request)
            with anyio.fail_after(2):
                while (await _model(served, kid))["connections"] != 1:
                    await anyio.sleep(0.01)
            assert (await _model(served, kid))["execution_state"] == "starting"
            backend.start_gate.set()
            with anyio.fail_after(5):
                reply = await ws.receive()
                while reply.channel is not Channel.SHELL:
                    reply = await ws.receive()
            assert reply.msg_type == "kernel_info_reply"
            assert reply.parent_header["msg_id"] == request.msg_id
            after = await _model(served, kid)
            assert (after["execution_state"], after["connections"]) == ("idle", 1)
            assert "reason" not in after
            executed, _ = await ws.execute("x = 1")
            assert executed.content["status"] == "ok"


async def test_a_failed_start_ends_in_the_model_and_on_every_socket() -> None:
    backend = FakeBackend()
    backend.start_gate = anyio.Event()
    backend.start_errors["fake"] = LaunchError("the kernel exited with code 3 at once")
    events_url = "api/events/subscribe?token="
    async with serving(backend, max_kernels=1) as served:
        async with websockets.connect(f"{served.ws_url}{events_url}{served.token}") as events:
            kid = str((await _post(served))["id"])
            async with kernel_socket(served, kid) as waiting:
                backend.start_gate.set()
                with anyio.fail_after(5):
                    status = await waiting.receive()
                    with pytest.raises(ConnectionClosed):
                        await waiting.receive()
                record = str(await events.recv())
        assert (status.msg_type, status.content) == ("status", {"execution_state": "dead"})
        assert waiting.ws.close_code == 1000
        assert "exited with code 3" in str(waiting.ws.close_reason)
        assert "Kernel failed to start" in record
        assert "500" in record
        model = await _model(served, kid)
        assert model["execution_state"] == "dead"
        assert "exited with code 3" in str(model["reason"])
        # A socket opened later is told the same at once.
        async with kernel_socket(served, kid) as late:
            with anyio.fail_after(5):
                assert (await late.receive()).content == {"execution_state": "dead"}
                with pytest.raises(ConnectionClosed):
                    await late.receive()
        assert late.ws.close_code == 1000
        async with served.http() as http:
            # A failed start holds nothing: it does not count against max_kernels.
            backend.start_errors.clear()
            again = await http.post("api/kernels", json={})
            assert again.status_code == 201, again.text
            assert (await http.post(f"api/kernels/{kid}/restart")).status_code == 409
            assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
            assert (await http.get(f"api/kernels/{kid}")).status_code == 404


async def test_concurrent_starts_count_against_max_kernels_atomically() -> None:
    backend = FakeBackend()
    backend.start_gate = anyio.Event()
    statuses: list[int] = []
    async with serving(backend, max_kernels=2) as served:

        async def start() -> None:
            async with served.http() as http:
                statuses.append((await http.post("api/kernels", json={})).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(start)
        assert sorted(statuses) == [201, 201, 403, 403, 403, 403]
        backend.start_gate.set()
        with anyio.fail_after(5):
            while len(backend.kernels) < 2:
                await anyio.sleep(0.01)
        assert len(backend.kernels) == 2


async def test_a_delete_while_starting_cancels_the_start() -> None:
    backend = FakeBackend()
    backend.start_gate = anyio.Event()
    async with serving(backend) as served:
        kid = str((await _post(served))["id"])
        async with kernel_socket(served, kid) as waiting, served.http() as http:
            with anyio.fail_after(2):
                while (await _model(served, kid))["connections"] != 1:
                    await anyio.sleep(0.01)
            assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
            with anyio.fail_after(5):
                assert (await waiting.receive()).content == {"execution_state": "dead"}
                with pytest.raises(ConnectionClosed):
                    await waiting.receive()
            assert waiting.ws.close_code == 1000
            assert "shut down while starting" in str(waiting.ws.close_reason)
            assert (await http.get(f"api/kernels/{kid}")).status_code == 404
            backend.start_gate.set()
            await anyio.sleep(0.05)
        assert backend.kernels == {}  # the start was cancelled, not finished


async def test_a_client_that_leaves_while_the_kernel_starts_is_let_go() -> None:
    backend = FakeBackend()
    backend.start_gate = anyio.Event()
    async with serving(backend) as served:
        kid = str((await _post(served))["id"])
        async with kernel_socket(served, kid) as early:
            await early.send(early.message("kernel_info_request"))  # moot: it leaves
            with anyio.fail_after(2):
                while (await _model(served, kid))["connections"] != 1:
                    await anyio.sleep(0.01)
        with anyio.fail_after(2):
            while (await _model(served, kid))["connections"] != 0:
                await anyio.sleep(0.01)
        backend.start_gate.set()
        async with kernel_socket(served, kid) as later:
            reply, _ = await later.execute("1")
        assert reply.content["status"] == "ok"
        # The early request was never forwarded: its client was gone.
        sent = [m.msg_type for m in backend.get(kid).messages]
        assert sent == ["execute_request"]


async def test_interrupt_and_restart_of_a_starting_kernel_are_refused() -> None:
    backend = FakeBackend()
    backend.start_gate = anyio.Event()
    async with serving(backend) as served, served.http() as http:
        kid = str((await _post(served))["id"])
        with anyio.fail_after(2):  # what it waits for is in the refusal
            while "reason" not in await _model(served, kid):
                await anyio.sleep(0.01)
        for path in ("interrupt", "restart"):
            refused = await http.post(f"api/kernels/{kid}/{path}")
            assert refused.status_code == 409, path
            assert "is starting: waiting for the test's start gate" in refused.json()["message"]
        backend.start_gate.set()
        await served.kernels.get(kid).running()
        assert (await http.post(f"api/kernels/{kid}/interrupt")).status_code == 204
        assert (await http.post(f"api/kernels/{kid}/restart")).status_code == 200


async def test_the_server_stops_with_a_start_in_flight() -> None:
    backend = FakeBackend()
    backend.start_gate = anyio.Event()
    with anyio.fail_after(5):
        async with serving(backend) as served:
            kid = str((await _post(served))["id"])
            async with kernel_socket(served, kid) as waiting:
                with anyio.fail_after(2):
                    while (await _model(served, kid))["connections"] != 1:
                        await anyio.sleep(0.01)
                served.server.handle_exit(signal.SIGTERM, None)  # as `kernelyard serve` stops
                with pytest.raises(ConnectionClosed):
                    await waiting.receive()
    assert waiting.ws.close_code == 1001  # the server stops: JupyterLab comes back
    assert backend.kernels == {}


def test_a_close_reason_fits_a_close_frame() -> None:
    assert close_reason("short") == "short"
    long = close_reason("é" * 200)
    assert len(long.encode()) <= MAX_CLOSE_REASON
    assert long.endswith("...")
