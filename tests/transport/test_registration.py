"""The launcher's registration socket (JEP 66) and launch() around it, with real sockets."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import zmq

from kernelyard.errors import LaunchError
from kernelyard.provisioning import LaunchOptions, LaunchSpec, SubprocessProvisioner
from kernelyard.transport import context
from kernelyard.transport.registration import RegistrationSocket, _ports
from kernelyard.wire import PORT_FIELDS, MessageFactory, Signer, decode, encode

pytestmark = pytest.mark.anyio

SILENT = [sys.executable, "-c", "import time; time.sleep(30)"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_kernel_that_never_registers_is_a_launch_error(tmp_path: Path) -> None:
    spec = LaunchSpec(argv=tuple(SILENT), handshake=True)
    with anyio.fail_after(10), pytest.raises(LaunchError, match=r"stayed silent for 0\.5 s"):
        await SubprocessProvisioner(tmp_path / "rt").start(
            spec, kernel_id="k1", options=LaunchOptions(startup_timeout=0.5, stderr=None)
        )
    assert list((tmp_path / "rt").iterdir()) == []  # no connection file left behind


async def test_garbage_on_the_registration_socket_is_ignored() -> None:
    signer = Signer(b"key")
    factory = MessageFactory(clock=lambda: datetime.now(UTC))
    registration = RegistrationSocket("127.0.0.1")
    peer = context().socket(zmq.DEALER)
    peer.linger = 0
    peer.connect(f"tcp://127.0.0.1:{registration.port}")
    try:
        ports = {name: 40000 + n for n, name in enumerate(PORT_FIELDS.values())}
        peer.send_multipart([b"", b"garbage"])  # not a message
        forged = factory.message("handshake_request", ports)
        peer.send_multipart([b"", *encode(forged, Signer(b"wrong key"))])  # badly signed
        wrong = factory.message("handshake_request", {**ports, "shell_port": "x"})
        peer.send_multipart([b"", *encode(wrong, signer)])  # not ports
        good = factory.message("handshake_request", ports)
        peer.send_multipart([b"", *encode(good, signer)])
        with anyio.fail_after(5):
            assert await registration.receive(signer, factory) == ports
        assert peer.poll(5000)
        frames = peer.recv_multipart()
        _, reply = decode(frames[1:], signer)
        assert reply.msg_type == "handshake_reply"
        assert reply.content == {"status": "ok"}
        assert reply.parent_msg_id == good.msg_id
    finally:
        peer.close()
        registration.close()


@pytest.mark.parametrize(
    "change",
    [
        {"shell_port": True},  # a bool is an int to isinstance, not a port
        {"shell_port": 0},
        {"iopub_port": 65536},
        {"hb_port": 4000.0},
        {"control_port": None},
    ],
)
def test_a_handshake_request_needs_five_valid_ports(change: dict[str, object]) -> None:
    factory = MessageFactory(clock=lambda: datetime.now(UTC))
    ports = {name: 40000 + n for n, name in enumerate(PORT_FIELDS.values())}
    assert _ports(factory.message("handshake_request", ports)) == ports
    assert _ports(factory.message("handshake_request", {**ports, **change})) is None
    assert _ports(factory.message("kernel_info_request", ports)) is None
