"""ChannelStream on real sockets: a send that waits for a connection is never forgotten."""

from __future__ import annotations

import socket
import threading
import time

import anyio
import pytest
import zmq

from kernelyard.transport import ChannelStream
from kernelyard.wire import Channel

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _late_peer(
    endpoint: str,
    got: list[list[bytes]],
    flood: int,
    stop: threading.Event,
    arrived: threading.Event,
) -> None:
    """Bind ``endpoint`` late, flood the dealer as soon as it is there, keep what it sends."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.bind(endpoint)
    sent = 0
    try:
        while not stop.is_set():
            if sent < flood:
                try:
                    router.send_multipart([b"dealer", b"%d" % sent], zmq.NOBLOCK)
                    sent += 1
                except zmq.ZMQError:  # not connected yet
                    time.sleep(0.001)
            if router.poll(1 if sent < flood else 50):
                got.append(router.recv_multipart())
                arrived.set()
    finally:
        router.close(linger=0)
        context.term()


@pytest.mark.parametrize("flood", [1, 2000])
async def test_a_send_waiting_for_a_connection_goes_out_while_the_reader_drains(
    flood: int,
) -> None:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    dealer: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    dealer.linger = 0
    dealer.setsockopt(zmq.IDENTITY, b"dealer")
    dealer.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing until the peer is there
    dealer.connect(endpoint)
    stream = ChannelStream(dealer, Channel.SHELL)
    got: list[list[bytes]] = []
    stop, arrived = threading.Event(), threading.Event()
    peer = threading.Thread(target=_late_peer, args=(endpoint, got, flood, stop, arrived))
    sent, all_read = anyio.Event(), anyio.Event()
    sent_at: list[float] = []
    try:
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                received = 0
                while received < flood:
                    received += len(await stream.receive_batch())
                all_read.set()

            async def send() -> None:
                await stream.send([b"hello"])
                sent_at.append(time.monotonic())
                sent.set()

            tg.start_soon(read)
            tg.start_soon(send)
            await anyio.sleep(0.3)  # time in which nothing may happen
            assert not sent.is_set()  # nobody to send to yet: it waits, it does not queue
            peer.start()
            connected = time.monotonic()
            with anyio.fail_after(10):
                await sent.wait()
                await all_read.wait()
            assert sent_at[0] - connected < 5  # not left waiting for some later event
            assert await anyio.to_thread.run_sync(arrived.wait, 10)
            assert got == [[b"dealer", b"hello"]]
    finally:
        stop.set()
        stream.close()
        if peer.is_alive():
            peer.join(10)
