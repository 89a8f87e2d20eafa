"""kernelyard.testing.FakeBackend through the KernelBackend interface, no server."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kernelyard._clock import utcnow
from kernelyard.backend import ChannelEvent, KernelChannels
from kernelyard.discovery import KernelSpec
from kernelyard.errors import (
    ChannelClosed,
    InvalidState,
    LaunchError,
    NoSuchKernel,
    NoSuchKernelSpec,
)
from kernelyard.lifecycle import Change, KernelEvent, KernelState
from kernelyard.testing import FAKE_SPEC, KERNEL_INFO, MAX_HELD, FakeBackend
from kernelyard.wire import (
    Channel,
    InputRequested,
    Message,
    MessageFactory,
    Output,
    Reply,
    Signer,
    encode,
    message_parts,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend() as fake:
        yield fake


class Client:
    """Sends requests through a backend's channels and reads what comes back, one event
    at a time (``events`` keeps every event read).
    """

    def __init__(self, channels: KernelChannels) -> None:
        self.channels = channels
        self.factory = MessageFactory(clock=utcnow)
        self.events: list[ChannelEvent] = []
        self._backlog: deque[ChannelEvent] = deque()

    async def send(self, msg_type: str, content: dict[str, Any], channel: Channel) -> Message:
        msg = self.factory.message(msg_type, content, channel=channel)
        await self.channels.send(
            channel, message_parts(msg), msg_id=msg.msg_id, msg_type=msg_type, origin="me"
        )
        return msg

    async def next(self) -> ChannelEvent:
        if not self._backlog:
            with anyio.fail_after(5):
                self._backlog.extend(await self.channels.receive())
        event = self._backlog.popleft()
        self.events.append(event)
        return event

    async def next_event(self, kind: type[Any]) -> Any:
        while not isinstance(event := await self.next(), kind):
            pass
        return event

    async def reply_to(self, msg: Message) -> Message:
        """The reply to ``msg`` (read from ``events`` if it came already)."""

        def answers(event: ChannelEvent) -> bool:
            return isinstance(event, Reply) and event.received.parent_id == msg.msg_id

        event = next((e for e in self.events if answers(e)), None)
        while event is None or not answers(event):
            event = await self.next()
        assert isinstance(event, Reply)
        return event.received.message()

    async def request(
        self, msg_type: str, channel: Channel = Channel.SHELL, **content: Any
    ) -> tuple[Message, list[Message]]:
        """Send a request; return its reply and its IOPub messages up to idle."""
        msg = await self.send(msg_type, content, channel)
        reply: Message | None = None
        outputs: list[Message] = []
        while reply is None or not outputs or outputs[-1].content != {"execution_state": "idle"}:
            event = await self.next()
            if isinstance(event, Reply) and event.received.parent_id == msg.msg_id:
                assert event.origin == "me"
                reply = event.received.message()
            elif isinstance(event, Output) and event.received.parent_id == msg.msg_id:
                outputs.append(event.received.message())
        return reply, outputs

    async def changes(self, *wanted: Change) -> list[KernelEvent]:
        """The next lifecycle events, which must be ``wanted``, in order."""
        seen = [await self.next_event(KernelEvent) for _ in wanted]
        assert [e.change for e in seen] == list(wanted)
        return seen


def types(messages: list[Message]) -> list[str]:
    return [m.msg_type for m in messages]


async def test_execute_publishes_like_a_python_kernel(backend: FakeBackend) -> None:
    kernel_id = await backend.start_kernel()
    assert backend.get(kernel_id).state is KernelState.RUNNING
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        reply, outputs = await client.request("execute_request", code="print('hi')\n6 * 7")
    assert types(outputs) == ["status", "execute_input", "stream", "execute_result", "status"]
    assert outputs[0].content == {"execution_state": "busy"}
    assert outputs[2].content == {"name": "stdout", "text": "hi\n"}
    assert outputs[3].content["data"] == {"text/plain": "42"}
    assert reply.content["status"] == "ok"
    assert reply.content["execution_count"] == 1
    assert reply.msg_type == "execute_reply"
    assert backend.get(kernel_id).execution_count == 1
    assert [m.msg_type for m in backend.get(kernel_id).messages] == ["execute_request"]


async def test_every_request_a_frontend_sends_at_start_is_answered(backend: FakeBackend) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        info, _ = await client.request("kernel_info_request")
        assert info.content == KERNEL_INFO
        comms, _ = await client.request("comm_info_request", target_name="x")
        assert comms.content == {"status": "ok", "comms": {}}
        await client.request("execute_request", code="alpha_value = 3", silent=False)
        done, _ = await client.request("complete_request", code="x = alpha_v", cursor_pos=11)
        assert done.content["matches"] == ["alpha_value"]
        assert (done.content["cursor_start"], done.content["cursor_end"]) == (4, 11)
        seen, _ = await client.request("inspect_request", code="alpha_value", cursor_pos=2)
        assert seen.content["found"] is True
        assert seen.content["data"] == {"text/plain": "3"}
        incomplete, _ = await client.request("is_complete_request", code="for i in x:")
        assert incomplete.content == {"status": "incomplete", "indent": ""}
        invalid, _ = await client.request("is_complete_request", code="1 +* 2")
        assert invalid.content == {"status": "invalid"}
        history, _ = await client.request("history_request", hist_access_type="tail", n=5)
        assert history.content["history"] == [[0, 1, "alpha_value = 3"]]


async def test_an_error_is_published_and_queued_requests_are_aborted(
    backend: FakeBackend,
) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        failing = await client.send("execute_request", {"code": "1 / 0"}, Channel.SHELL)
        queued, outputs = await client.request("execute_request", code="print('never')")
        failed = await client.reply_to(failing)
    assert failed.content["status"] == "error"
    assert failed.content["ename"] == "ZeroDivisionError"
    assert any("1 / 0" in line or "<cell>" in line for line in failed.content["traceback"])
    assert queued.content["status"] == "aborted"
    assert "stream" not in types(outputs)


async def test_input_round_trips_through_stdin(backend: FakeBackend) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        run = await client.send(
            "execute_request", {"code": "print('got', input('name? '))"}, Channel.SHELL
        )
        asked: InputRequested[str] = await client.next_event(InputRequested)
        assert asked.origin == "me"
        assert asked.received.message().content == {"prompt": "name? ", "password": False}
        await client.send("input_reply", {"value": "ada"}, Channel.STDIN)
        reply: Reply[str] = await client.next_event(Reply)
    assert reply.received.parent_id == run.msg_id
    streams = [
        e.received.message().content["text"]
        for e in client.events
        if isinstance(e, Output) and e.received.msg_type == "stream"
    ]
    assert streams == ["got ada\n"]


async def test_input_without_stdin_is_an_error(backend: FakeBackend) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        reply, _ = await Client(channels).request(
            "execute_request", code="input()", allow_stdin=False
        )
    assert reply.content["ename"] == "StdinNotImplementedError"


@pytest.mark.parametrize("how", ["backend", "interrupt_request"])
async def test_an_interrupt_ends_a_sleeping_cell(backend: FakeBackend, how: str) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        running = await client.send("execute_request", {"code": "sleep(30)"}, Channel.SHELL)
        await client.next_event(Output)  # busy: it runs
        if how == "backend":
            await backend.interrupt_kernel(kernel_id)
        else:
            answered, _ = await client.request("interrupt_request", Channel.CONTROL)
            assert answered.content == {"status": "ok"}
        with anyio.fail_after(2):
            reply = await client.reply_to(running)
    assert reply.content["ename"] == "KeyboardInterrupt"


async def test_a_death_is_undone_and_what_was_sent_meanwhile_is_answered(
    backend: FakeBackend,
) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        await client.request("execute_request", code="x = 1")
        backend.crash(kernel_id, "killed by the test")
        died, _ = await client.changes(Change.DIED, Change.RESTART)
        assert (died.will_restart, died.reason) == (True, "killed by the test")
        held = await client.send("execute_request", {"code": "'x' in dir()"}, Channel.SHELL)
        await client.changes(Change.RESTARTED)
        reply: Reply[str] = await client.next_event(Reply)
    assert reply.received.parent_id == held.msg_id
    assert reply.received.message().content["execution_count"] == 1  # a new process
    assert backend.get(kernel_id).restarts == 1


async def test_an_unsupervised_death_is_final() -> None:
    async with FakeBackend(restart=False) as backend:
        kernel_id = await backend.start_kernel()
        async with backend.open_channels(kernel_id) as channels:
            client = Client(channels)
            backend.crash(kernel_id)
            died, gave_up = await client.changes(Change.DIED, Change.GAVE_UP)
            assert died.will_restart is False
            assert gave_up.state is KernelState.DEAD
            with pytest.raises(ChannelClosed, match="dead"):
                await client.send("execute_request", {"code": "1"}, Channel.SHELL)
            with pytest.raises(InvalidState):
                await backend.interrupt_kernel(kernel_id)
            await backend.restart_kernel(kernel_id)  # by hand, it comes back
            await client.changes(Change.RESTART, Change.RESTARTED)
            reply, _ = await client.request("execute_request", code="2")
            assert reply.content["status"] == "ok"


async def test_the_restart_limit_gives_a_kernel_up() -> None:
    async with FakeBackend(restart_limit=1) as backend:
        kernel_id = await backend.start_kernel()
        async with backend.open_channels(kernel_id) as channels:
            client = Client(channels)
            backend.crash(kernel_id)
            await client.changes(Change.DIED, Change.RESTART, Change.RESTARTED)
            backend.crash(kernel_id)
            await client.changes(Change.DIED, Change.GAVE_UP)
        assert backend.get(kernel_id).lifecycle.gone


async def test_a_crash_from_a_cell_and_a_clients_shutdown_request_are_deaths(
    backend: FakeBackend,
) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        await client.send("execute_request", {"code": "crash()"}, Channel.SHELL)
        died, _, _ = await client.changes(Change.DIED, Change.RESTART, Change.RESTARTED)
        assert "crash()" in died.reason
        reply, _ = await client.request("shutdown_request", Channel.CONTROL, restart=False)
        assert reply.content == {"status": "ok", "restart": False}
        died, _, _ = await client.changes(Change.DIED, Change.RESTART, Change.RESTARTED)
        assert "shutdown_request" in died.reason


async def test_shutdown_ends_the_channels(backend: FakeBackend) -> None:
    kernel_id = await backend.start_kernel()
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        await backend.shutdown_kernel(kernel_id, reason="culled")
        (event,) = await client.changes(Change.SHUTDOWN)
        assert event.reason == "culled"
        with pytest.raises(ChannelClosed):
            await channels.receive()
        with pytest.raises(ChannelClosed):
            await client.send("execute_request", {"code": "1"}, Channel.SHELL)
    with pytest.raises(NoSuchKernel):
        await backend.shutdown_kernel(kernel_id)


async def test_sends_held_while_the_kernel_is_down_are_bounded(backend: FakeBackend) -> None:
    kernel_id = await backend.start_kernel()
    kernel = backend.get(kernel_id)
    async with backend.open_channels(kernel_id) as channels:
        client = Client(channels)
        kernel.lifecycle.apply(Change.RESTART)  # as if a restart were under way
        for _ in range(MAX_HELD):
            await client.send("comm_msg", {}, Channel.SHELL)
        with pytest.raises(ChannelClosed, match="messages wait"):
            await client.send("comm_msg", {}, Channel.SHELL)


async def test_forged_frames_are_dropped_by_the_fake_kernel(backend: FakeBackend) -> None:
    kernel_id = await backend.start_kernel()
    kernel = backend.get(kernel_id)
    assert kernel.process is not None

    class Nobody:
        def arrive(self, channel: Channel, frames: list[bytes]) -> None:
            raise AssertionError("a forged request was answered")

    forged = MessageFactory(clock=utcnow).message("execute_request", {"code": "1"})

    kernel.process.receive(Nobody(), Channel.SHELL, encode(forged, Signer(b"wrong key")))
    await anyio.sleep(0.01)
    assert kernel.messages == []


async def test_bad_calls_raise_named_errors(tmp_path: Path) -> None:
    (tmp_path / "logo-64x64.png").write_bytes(b"\x89PNG")
    spec = KernelSpec(name="with-logo", argv=("x",), resource_dir=tmp_path)
    backend = FakeBackend([FAKE_SPEC, spec])
    with pytest.raises(InvalidState, match="async with"):
        await backend.start_kernel()
    async with backend:
        with pytest.raises(InvalidState, match="already open"):
            await backend.__aenter__()
        with pytest.raises(NoSuchKernelSpec):
            await backend.start_kernel("nope")
        kernel_id = await backend.start_kernel(kernel_id="k-1", env={"A": "1"}, cwd="/tmp")
        assert (backend.get("k-1").env, backend.get("k-1").cwd) == ({"A": "1"}, "/tmp")
        with pytest.raises(InvalidState, match="in use"):
            await backend.start_kernel(kernel_id=kernel_id)
        backend.start_errors["with-logo"] = LaunchError("no such program")
        with pytest.raises(LaunchError):
            await backend.start_kernel("with-logo")
        assert list(backend.kernels) == [kernel_id]
        for call in (
            backend.interrupt_kernel("missing"),
            backend.restart_kernel("missing"),
            backend.shutdown_kernel("missing"),
        ):
            with pytest.raises(NoSuchKernel):
                await call
        with pytest.raises(NoSuchKernel):
            backend.crash("missing")
        with pytest.raises(NoSuchKernel):
            async with backend.open_channels("missing"):
                pass
        specs = await backend.kernel_specs()
        assert (specs.default, sorted(specs.specs)) == ("fake", ["fake", "with-logo"])
        assert await backend.kernel_spec_file("with-logo", "logo-64x64.png") == b"\x89PNG"
        for name, filename in [("with-logo", "../x"), ("with-logo", "nope.png"), ("fake", "a")]:
            with pytest.raises(NoSuchKernelSpec):
                await backend.kernel_spec_file(name, filename)
        with pytest.raises(NoSuchKernelSpec):
            await backend.kernel_spec_file("nope", "logo-64x64.png")
    assert backend.kernels == {}  # leaving it stopped every kernel
