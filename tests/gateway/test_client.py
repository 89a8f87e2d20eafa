"""The library against a gateway: KernelClient over a remote kernel's WebSocket.

The upstream is a kernelyard server on a FakeBackend (in process); the real
upstreams (kernelyard serve, jupyter_server, Kernel Gateway) are in
tests/integration/test_gateway_client.py.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import anyio
import pytest

from kernelyard.errors import (
    GatewayHTTPError,
    GatewayUnreachable,
    KernelDied,
    NoSuchKernelSpec,
)
from kernelyard.gateway import hl
from kernelyard.manager.hl import run_kernel
from kernelyard.wire import Message

from ..server.conftest import Served, serving
from .conftest import gateway_to, settings_for
from .proxy import CutProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def text_of(outputs: list[Message]) -> str:
    return "".join(m.content["text"] for m in outputs if m.msg_type == "stream")


async def test_run_kernel_with_a_gateway_does_what_it_does_locally(upstream: Served) -> None:
    outputs: list[Message] = []
    async with run_kernel("fake", gateway=settings_for(upstream)) as client:
        (kernel_id,) = upstream.backend.kernels
        assert client.kernel_id == kernel_id
        assert client.connection_info is None
        reply = await client.execute_interactive("print('hello')", output_hook=outputs.append)
        assert reply.content["status"] == "ok"
        assert text_of(outputs) == "hello\n"
        assert (await client.complete("pri", 3)).content["matches"] == ["print"]
        assert (await client.inspect("print", 5)).content["status"] == "ok"
        assert (await client.is_complete("for i in x:")).content["status"] == "incomplete"
        asked: list[str] = []

        def answer(request: Message) -> str:
            asked.append(request.content["prompt"])
            return "Ada"

        outputs.clear()
        reply = await client.execute_interactive(
            "print('hi', input('name? '))", output_hook=outputs.append, stdin_hook=answer
        )
        assert asked == ["name? "]
        assert text_of(outputs) == "hi Ada\n"
        assert client.execution_state == "idle"
    assert upstream.backend.kernels == {}  # deleted on the gateway when the block ends


async def test_interrupt_restart_and_a_kernel_deleted_elsewhere(upstream: Served) -> None:
    async with hl.running_kernel("fake", settings_for(upstream)) as (kernel, client):
        async with client.iopub() as iopub, anyio.create_task_group() as tg:
            replies: list[Message] = []

            async def run() -> None:
                replies.append(await client.execute("print('go')\nsleep(30)"))

            tg.start_soon(run)
            with anyio.fail_after(5):
                while (await iopub.receive()).msg_type != "stream":
                    pass
            await kernel.interrupt()
        assert replies[0].content["ename"] == "KeyboardInterrupt"

        async with client.iopub() as iopub, anyio.create_task_group() as tg:
            died: list[BaseException] = []

            async def pending() -> None:
                try:
                    await client.execute("print('waiting')\nsleep(30)")
                except KernelDied as exc:
                    died.append(exc)

            tg.start_soon(pending)
            with anyio.fail_after(5):  # the request is with the kernel
                while (await iopub.receive()).msg_type != "stream":
                    pass
            await kernel.restart()
        assert "restarting" in str(died[0])
        assert (await client.execute("x = 1", timeout=5)).content["status"] == "ok"

        await upstream.backend.shutdown_kernel(kernel.kernel_id, reason="culled")
        with anyio.fail_after(5):
            while client.is_alive:
                await anyio.sleep(0.01)
        with pytest.raises(KernelDied, match="shut down: culled"):
            await client.execute("1")


async def test_a_cut_upstream_connection_is_invisible_to_the_client() -> None:
    async with serving() as upstream:
        port = urlsplit(upstream.url).port
        assert port is not None
        async with CutProxy.running(port) as proxy:
            settings = settings_for(upstream, url=proxy.url)
            outputs: list[Message] = []
            accepted_at_cut: list[int] = []

            async def cut() -> None:
                with anyio.fail_after(5):
                    while len(outputs) < 20:
                        await anyio.sleep(0.005)
                accepted_at_cut.append(proxy.accepted)
                proxy.cut()

            async with (
                run_kernel("fake", gateway=settings) as client,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(cut)
                await client.execute_interactive(
                    "for i in range(100):\n    print(i)\n    sleep(0.005)",
                    output_hook=outputs.append,
                    timeout=20,
                )
            assert proxy.accepted > accepted_at_cut[0]  # the upstream socket was reopened
            assert text_of(outputs).splitlines() == [str(i) for i in range(100)]


async def test_bad_names_tokens_and_hosts_are_clear_errors(upstream: Served) -> None:
    with pytest.raises(NoSuchKernelSpec, match="nope"):
        async with run_kernel("nope", gateway=settings_for(upstream)):
            pass
    with pytest.raises(GatewayHTTPError) as caught:
        async with run_kernel("fake", gateway=settings_for(upstream, auth_token="wrong")):
            pass
    assert caught.value.status_code == 403
    with pytest.raises(GatewayUnreachable, match=r"127\.0\.0\.1:9"):
        async with run_kernel("fake", gateway=settings_for(upstream, url="http://127.0.0.1:9")):
            pass
    with pytest.raises(TypeError, match="finder or provisioner"):
        async with run_kernel("fake", gateway=settings_for(upstream), provisioner=object()):  # type: ignore[arg-type]
            pass
    assert upstream.backend.kernels == {}


async def test_the_client_shares_the_session_of_its_upstream_socket(upstream: Served) -> None:
    async with gateway_to(upstream) as gateway:
        kernel_id = await gateway.start_kernel("fake")
        session = uuid.uuid4().hex
        async with gateway.client(kernel_id, session=session) as client:
            info = await client.wait_for_ready(timeout=5)
            assert info.content["status"] == "ok"
            assert client.session == session
            assert info.parent_header["session"] == session


async def test_a_client_over_channels_opens_again_after_a_close(upstream: Served) -> None:
    async with gateway_to(upstream) as gateway:
        kernel_id = await gateway.start_kernel("fake")
        client = gateway.client(kernel_id)
        for round_ in range(2):
            async with client:
                reply = await client.execute(f"x = {round_}", timeout=5)
                assert reply.content["status"] == "ok"
        assert gateway._channels == {}  # every upstream socket closed with its client
