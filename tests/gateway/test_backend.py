"""GatewayBackend against an upstream kernelyard server on a FakeBackend (in process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from kernelyard._clock import utcnow
from kernelyard.backend import KernelChannels
from kernelyard.errors import (
    ChannelClosed,
    GatewayHTTPError,
    GatewaySettingError,
    NoSuchKernel,
    NoSuchKernelSpec,
)
from kernelyard.gateway import GatewayBackend
from kernelyard.gateway.renewer import TOKEN_FILE_ENV, load_renewer
from kernelyard.lifecycle import Change, KernelEvent
from kernelyard.wire import Channel, MessageFactory, Output, Reply, message_parts

from ..server.conftest import Served, serving
from .conftest import gateway_to, settings_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

FACTORY = MessageFactory(clock=utcnow)


async def execute(channels: KernelChannels, code: str) -> tuple[dict, str, list[object]]:
    """Send an execute; return its reply content, the stdout text and the lifecycle events."""
    msg = FACTORY.message("execute_request", {"code": code, "silent": False}, channel=Channel.SHELL)
    await channels.send(
        Channel.SHELL, message_parts(msg), msg_id=msg.msg_id, msg_type=msg.msg_type, origin="me"
    )
    text, reply, idle, events = "", None, False, []
    with anyio.fail_after(10):
        while reply is None or not idle:
            for event in await channels.receive():
                if isinstance(event, KernelEvent):
                    events.append(event.change)
                    continue
                received = event.received
                if received.parent_id != msg.msg_id:
                    continue
                if isinstance(event, Reply):
                    assert event.origin == "me"
                    reply = dict(received.content)
                elif isinstance(event, Output):
                    if received.msg_type == "stream":
                        text += received.content["text"]
                    idle = idle or event.execution_state == "idle"
    return reply, text, events


async def events_until_closed(channels: KernelChannels) -> list[KernelEvent]:
    """The lifecycle events ``channels`` deliver until they close."""
    seen: list[KernelEvent] = []
    with anyio.fail_after(5):
        while True:
            try:
                batch = await channels.receive()
            except ChannelClosed:
                return seen
            seen += [e for e in batch if isinstance(e, KernelEvent)]


async def test_specs_start_execute_restart_shutdown(upstream: Served) -> None:
    async with gateway_to(upstream) as gateway:
        specs = await gateway.kernel_specs()
        assert specs.default == "fake"
        assert specs.specs["fake"].display_name == "Python (fake, in memory)"
        kernel_id = await gateway.start_kernel("fake", cwd="/somewhere", env={"KERNEL_X": "1"})
        started = upstream.backend.kernels[kernel_id]
        assert started.env["KERNEL_X"] == "1"
        assert started.env["KERNEL_WORKING_DIR"] == "/somewhere"
        assert started.env["KERNEL_LAUNCH_TIMEOUT"] == "40"
        async with gateway.open_channels(kernel_id) as channels:
            reply, text, _ = await execute(channels, "print('hello')")
            assert reply["status"] == "ok"
            assert text == "hello\n"
            await gateway.restart_kernel(kernel_id)
            reply, text, events = await execute(channels, "print('again')")
            assert text == "again\n"
            assert events[:2] == [Change.RESTART, Change.RESTARTED]
            await gateway.interrupt_kernel(kernel_id)
            await gateway.shutdown_kernel(kernel_id)
            seen = await events_until_closed(channels)
            assert seen[-1].change is Change.SHUTDOWN
        assert kernel_id not in upstream.backend.kernels


async def test_unknown_names_and_ids(upstream: Served) -> None:
    async with gateway_to(upstream) as gateway:
        with pytest.raises(NoSuchKernelSpec):
            await gateway.start_kernel("no-such-kernel")
        with pytest.raises(NoSuchKernel):
            await gateway.interrupt_kernel("0" * 32)
        with pytest.raises(NoSuchKernelSpec):
            await gateway.kernel_spec_file("fake", "../kernel.json")


async def test_wrong_token_names_the_hop(upstream: Served) -> None:
    async with gateway_to(upstream, auth_token="wrong") as gateway:
        with pytest.raises(GatewayHTTPError) as caught:
            await gateway.kernel_specs()
    assert caught.value.status_code == 403 or caught.value.status_code == 401
    assert str(caught.value).startswith(f"the gateway at {upstream.url.rstrip('/')} answered")


async def test_exit_deletes_what_it_started_unless_kept(upstream: Served) -> None:
    async with gateway_to(upstream) as gateway:
        deleted = await gateway.start_kernel("fake")
    async with gateway_to(upstream, keep_kernels=True) as gateway:
        kept = await gateway.start_kernel("fake")
    assert deleted not in upstream.backend.kernels
    assert kept in upstream.backend.kernels


async def test_kernelspecs_are_asked_for_the_kernel_user() -> None:
    """``KERNEL_USERNAME`` goes along as ``?user=`` (Enterprise Gateway filters by it)."""
    queries: list[bytes] = []

    def recording(app: Any) -> Any:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/api/kernelspecs":
                queries.append(scope["query_string"])
            await app(scope, receive, send)

        return wrapped

    async with serving(wrap_app=recording) as upstream:
        settings = settings_for(upstream)
        async with GatewayBackend(settings, environ={"KERNEL_USERNAME": "ada"}) as gateway:
            assert "fake" in (await gateway.kernel_specs()).specs
        async with GatewayBackend(settings, environ={}) as gateway:
            await gateway.kernel_specs()
    assert queries == [b"user=ada", b""]


async def test_the_file_renewer_rotates_the_token_of_a_running_client(
    upstream: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``file`` entry point: a token rotated in its file is used from the next request."""
    token_file = tmp_path / "token"
    token_file.write_text("stale\n")
    monkeypatch.setenv(TOKEN_FILE_ENV, str(token_file))
    async with gateway_to(upstream, auth_token="", token_renewer="file") as gateway:
        with pytest.raises(GatewayHTTPError) as caught:
            await gateway.list_kernels()
        assert caught.value.status_code == 403
        token_file.write_text(upstream.token + "\n")
        assert await gateway.list_kernels() == []
        token_file.write_text("")  # a broken rotation keeps the token that worked
        assert await gateway.list_kernels() == []
    monkeypatch.delenv(TOKEN_FILE_ENV)
    with pytest.raises(GatewaySettingError, match="names no file"):
        load_renewer("file")
