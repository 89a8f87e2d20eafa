"""wait_for_ready with a kernel that never sends iopub_welcome (protocol < 5.5, PUB iopub).

The peer is a minimal kernel on real ZeroMQ sockets in a thread: it answers
kernel_info_request and publishes busy/idle around it, as ipykernel 6 does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import zmq

from kernelyard.client import KernelClient
from kernelyard.wire import Channel, ConnectionInfo, MessageFactory, decode, encode

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def old_kernel() -> Iterator[ConnectionInfo]:
    context = zmq.Context()
    shell = context.socket(zmq.ROUTER)
    iopub = context.socket(zmq.PUB)
    others = [context.socket(zmq.ROUTER) for _ in range(2)] + [context.socket(zmq.REP)]
    ports = [s.bind_to_random_port("tcp://127.0.0.1") for s in (shell, iopub, *others)]
    info = ConnectionInfo(
        shell_port=ports[0],
        iopub_port=ports[1],
        control_port=ports[2],
        stdin_port=ports[3],
        hb_port=ports[4],
        key=b"old-kernel-key",
    )
    signer = info.signer()
    factory = MessageFactory(clock=lambda: datetime.now(UTC))
    stop = threading.Event()

    def serve() -> None:
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        while not stop.is_set():
            if not poller.poll(50):
                continue
            identities, request = decode(shell.recv_multipart(), signer)
            for state in ("busy", None, "idle"):
                if state is None:
                    reply = factory.message(
                        "kernel_info_reply",
                        {"status": "ok", "protocol_version": "5.3", "implementation": "old"},
                        parent=request,
                    )
                    shell.send_multipart(encode(reply, signer, identities=identities))
                else:
                    status = factory.message("status", {"execution_state": state}, parent=request)
                    iopub.send_multipart(encode(status, signer))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield info
    finally:
        stop.set()
        thread.join()
        for sock in (shell, iopub, *others):
            sock.close(linger=0)
        context.term()


async def test_readiness_without_iopub_welcome(old_kernel: ConnectionInfo) -> None:
    async with KernelClient(old_kernel, heartbeat=False) as client, client.iopub() as messages:
        reply = await client.wait_for_ready(timeout=10)
        assert reply.content["implementation"] == "old"
        # IOPub is live: the probe's own status messages came through, none was eaten.
        first = await messages.receive()
        assert first.msg_type == "status"
        assert first.channel is Channel.IOPUB
