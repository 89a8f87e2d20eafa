"""What clients see of a kernel's life through the server: shutdown, death, restart,
culling, the server stopping, activity and action events. In process, on a FakeBackend.
"""

from __future__ import annotations

import json

import anyio
import pytest
import websockets

from kernelyard.testing import FakeBackend
from kernelyard.wire import Message

from ..wsclient import KernelSocket, kernel_socket
from .conftest import Served, serving
from .test_channels import close_code, first_output, output_and_reply, until_closed

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


def states(messages: list[Message]) -> list[str]:
    return [m.content["execution_state"] for m in messages if m.msg_type == "status"]


async def status_until(ws: KernelSocket, state: str) -> dict[str, object]:
    """Read until a ``status`` of ``state``; its header."""
    with anyio.fail_after(5):
        while True:
            msg = await ws.receive()
            if msg.msg_type == "status" and msg.content["execution_state"] == state:
                return dict(msg.header)


async def model(served: Served, kid: str) -> dict[str, object]:
    async with served.http() as http:
        response = await http.get(f"api/kernels/{kid}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_a_shutdown_tells_clients_and_closes_them_for_good(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as a, kernel_socket(served, kid, v1=True) as b:
        async with served.http() as http:
            assert (await http.delete(f"api/kernels/{kid}")).status_code == 204
        for ws in (a, b):
            got, closed = await until_closed(ws)
            assert states(got)[-1:] == ["dead"]
            assert close_code(closed) == (1000, "the kernel was shut down")
    assert kid not in served.backend.kernels


async def test_a_death_that_is_undone_keeps_the_connection() -> None:
    async with serving(FakeBackend(restart_delay=0.2)) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            await ws.execute("x = 1")
            served.backend.crash(kid)
            header = await status_until(ws, "restarting")
            assert set(header) >= {"msg_id", "msg_type", "username", "session", "date", "version"}
            assert (await model(served, kid))["execution_state"] == "restarting"
            # Sent while the kernel is down: held, and answered by the new kernel.
            reply, _ = await ws.execute("'x' in dir()")
            assert reply.content["execution_count"] == 1
            assert (await model(served, kid))["execution_state"] == "idle"
        assert served.backend.get(kid).restarts == 1


async def test_a_death_for_good_is_final() -> None:
    async with serving(FakeBackend(restart=False)) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            served.backend.crash(kid, "killed by the test")
            got, closed = await until_closed(ws)
        assert states(got)[-1:] == ["dead"]
        assert close_code(closed) == (1000, "the kernel died")
        dead = await model(served, kid)
        assert (dead["execution_state"], dead["reason"]) == ("dead", "killed by the test")
        async with served.http() as http:  # a dead kernel can still be restarted or deleted
            assert (await http.post(f"api/kernels/{kid}/restart")).status_code == 200
            assert (await model(served, kid))["execution_state"] == "idle"
            async with kernel_socket(served, kid) as again:
                reply, _ = await again.execute("'back'")
            assert reply.content["status"] == "ok"
            assert (await http.delete(f"api/kernels/{kid}")).status_code == 204


async def test_too_many_deaths_give_the_kernel_up() -> None:
    async with serving(FakeBackend(restart_limit=1)) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            served.backend.crash(kid)
            reply, _ = await ws.execute("1")  # after the first restart
            served.backend.crash(kid)
            got, closed = await until_closed(ws)
        assert reply.content["status"] == "ok"
        assert states(got)[-2:] == ["restarting", "dead"]
        assert close_code(closed)[0] == 1000


async def test_a_restart_by_hand_is_announced_and_keeps_connections(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as ws, served.http() as http:
        await ws.execute("x = 1")
        assert (await http.post(f"api/kernels/{kid}/restart")).status_code == 200
        await status_until(ws, "restarting")
        reply, _ = await ws.execute("x")
    assert reply.content["ename"] == "NameError"


async def test_idle_disconnected_kernels_are_culled() -> None:
    async with serving(cull_idle_timeout=0.2, cull_interval=0.05) as served:
        events_url = f"{served.ws_url}api/events/subscribe?token={served.token}"
        async with websockets.connect(events_url) as events:
            connected, idle = await served.start(), await served.start()
            async with kernel_socket(served, connected) as ws:
                with anyio.fail_after(5):
                    while idle in served.backend.kernels:
                        await anyio.sleep(0.02)
                await anyio.sleep(0.3)
                assert connected in served.backend.kernels  # connected: kept
                reply, _ = await ws.execute("1")
                assert reply.content["status"] == "ok"
            actions = []
            with anyio.fail_after(5):
                while "cull" not in actions:
                    record = json.loads(await events.recv())
                    assert record["__schema__"].endswith("kernel_actions/v1")
                    actions.append(record["action"])
                    if record["action"] == "cull":
                        assert record["kernel_id"] == idle
        assert actions[:2] == ["start", "start"]


async def test_connected_and_busy_kernels_are_culled_when_allowed() -> None:
    knobs = {"cull_connected": True, "cull_busy": True}
    async with serving(cull_idle_timeout=0.2, cull_interval=0.05, **knobs) as served:
        kid = await served.start()
        async with kernel_socket(served, kid) as ws:
            await first_output(ws, "print('busy')\nsleep(30)")
            got, closed = await until_closed(ws)
        assert states(got)[-1:] == ["dead"]
        assert close_code(closed) == (1000, "the kernel was culled")


async def test_a_busy_kernel_is_not_culled_by_default() -> None:
    async with serving(cull_idle_timeout=0.1, cull_interval=0.05) as served:
        kid = await served.start()
        async with kernel_socket(served, kid, session="s") as ws:
            request = await first_output(ws, "print('busy')\nsleep(0.4)")
        assert (await model(served, kid))["execution_state"] == "busy"
        await anyio.sleep(0.2)
        assert kid in served.backend.kernels
        async with kernel_socket(served, kid, session="s") as ws:
            _, reply = await output_and_reply(ws, request)
        assert reply.content["status"] == "ok"


async def test_the_server_stopping_closes_connections_with_1001(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as ws:
        served.server.stop()
        _, closed = await until_closed(ws)
    assert close_code(closed) == (1001, "the server is stopping")
    with anyio.fail_after(5):  # then every kernel is shut down
        while served.backend.kernels:
            await anyio.sleep(0.01)


async def test_activity_and_execution_state_follow_the_kernel(served: Served) -> None:
    kid = await served.start()
    before = (await model(served, kid))["last_activity"]
    async with kernel_socket(served, kid) as ws:
        request = await first_output(ws, "print('go')\nsleep(0.2)")
        busy = await model(served, kid)
        assert (busy["execution_state"], busy["connections"]) == ("busy", 1)
        await output_and_reply(ws, request)
        await status_until(ws, "idle")
    after = await model(served, kid)
    assert after["execution_state"] == "idle"
    assert str(after["last_activity"]) > str(before)


async def test_every_action_is_an_event(served: Served) -> None:
    events_url = f"{served.ws_url}api/events/subscribe?token={served.token}"
    async with websockets.connect(events_url) as events, served.http() as http:
        kid = await served.start()
        await http.post(f"api/kernels/{kid}/interrupt")
        await http.post(f"api/kernels/{kid}/restart")
        await http.delete(f"api/kernels/{kid}")
        records = [json.loads(await events.recv()) for _ in range(4)]
    assert [r["action"] for r in records] == ["start", "interrupt", "restart", "shutdown"]
    assert {r["kernel_id"] for r in records} == {kid}
    assert all(r["kernel_name"] == "fake" and "status_code" not in r for r in records)
