"""CurveZMQ between managers and kernels, with real peers on both sides.

All four pairings: jupyter_client 8.10's manager (``transport_encryption=
"required"``) with our kernel, ours with ipykernel 7.4, ours with ours
(spawned and forked); the server and ``kernelyard run`` with both kernels;
proof on the wire (a recording TCP relay between client and kernel); and the
bad inputs: a wrong server key, malformed keys, a kernelspec without support.
"""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
import zmq

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.discovery.ownkernel import PRELOAD, install_kernelspec
from kernelyard.errors import ConnectionInfoError, LaunchError, ReplyTimeout
from kernelyard.manager import KernelManager, MultiKernelManager
from kernelyard.manager.hl import running_kernel
from kernelyard.provisioning import (
    LaunchOptions,
    SubprocessProvisioner,
    TransportEncryption,
    read_connection_file,
)
from kernelyard.wire import ConnectionInfo, Message, Transport

from ..helpers import Collect, make_spec_dir, run_python, running
from .serverutil import (
    Server,
    kernel_socket,
    running_jupyter_server,
    running_server,
    start_kernel,
    stream_text,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(240)]

IPYKERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
KERNELYARD = [sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"]
CURVE = {"supported_encryption": ["curve"]}
REQUIRED = LaunchOptions(transport_encryption="required", stderr=None)


@pytest.fixture
def curve_finder(finder: KernelFinder, kernels_dir: Path, tmp_path: Path) -> KernelFinder:
    """The test kernels, and these that declare Curve support, as installed ones do."""
    ipython = {"IPYTHONDIR": str(tmp_path / "ipython")}
    make_spec_dir(kernels_dir, "ipykernel-curve", argv=IPYKERNEL, metadata=CURVE)
    make_spec_dir(
        kernels_dir,
        "kernelyard-curve",
        argv=KERNELYARD,
        interrupt_mode="message",
        env=ipython,
        metadata={"kernelyard": {"handshake": True}, **CURVE},
    )
    make_spec_dir(
        kernels_dir,
        "kernelyard-curve-forked",
        argv=KERNELYARD,
        interrupt_mode="message",
        env=ipython,
        metadata={"kernelyard": {"handshake": True, "preload": list(PRELOAD)}, **CURVE},
    )
    return finder


async def drive(manager: KernelManager, client: KernelClient) -> None:
    """What a user does with a kernel, over an encrypted connection: execute with
    output, input(), an interrupt, a restart (the same keys) and, after it, execute again.
    """
    info = manager.connection_info
    assert info is not None
    assert info.encrypted
    assert manager.process is not None
    path = manager.process.connection_file
    assert read_connection_file(path).curve_keys == info.curve_keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    out = Collect()
    reply = await client.execute_interactive("print('out', 6 * 7)", output_hook=out, timeout=30)
    assert reply.content["status"] == "ok"
    assert out.text() == "out 42\n"

    prompts: list[str] = []

    def answer(request: Message) -> str:
        prompts.append(request.content["prompt"])
        return "typed"

    out = Collect()
    reply = await client.execute_interactive(
        "print('got', input('name? '))", output_hook=out, stdin_hook=answer, timeout=30
    )
    assert reply.content["status"] == "ok"
    assert prompts == ["name? "]
    assert out.text() == "got typed\n"

    async with running(client, "import time; print('started', flush=True); time.sleep(30)") as (
        _,
        replies,
    ):
        await manager.interrupt()
    assert replies[0].content["status"] == "error"
    assert replies[0].content["ename"] == "KeyboardInterrupt"

    await client.execute("kept = 1", timeout=30)
    await manager.restart()
    await client.wait_for_ready(timeout=60)
    assert manager.connection_info is not None
    assert manager.connection_info.curve_keys == info.curve_keys
    assert read_connection_file(path).curve_keys == info.curve_keys
    reply = await client.execute("kept", timeout=30)
    assert reply.content["status"] == "error"  # a new process: the namespace is gone
    assert reply.content["ename"] == "NameError"


@pytest.mark.parametrize(
    ("kernel", "transport"),
    [("ipykernel-curve", "tcp"), ("kernelyard-curve", "tcp"), ("kernelyard-curve", "ipc")],
)
async def test_our_manager_and_client_drive_an_encrypted_kernel(
    curve_finder: KernelFinder, kernel: str, transport: Transport
) -> None:
    options = replace(REQUIRED, transport=transport)
    async with running_kernel(kernel, finder=curve_finder, options=options) as (manager, client):
        info = await client.kernel_info(timeout=30)
        if kernel.startswith("kernelyard"):
            assert info.content["encrypted"] is True
            assert info.content["supported_encryption"] == ["curve"]
        await drive(manager, client)


async def test_a_forked_kernel_is_encrypted_too(curve_finder: KernelFinder) -> None:
    async with MultiKernelManager(finder=curve_finder, options=REQUIRED) as kernels:
        assert await kernels.warm_up("kernelyard-curve-forked", wait=True)
        kernel_id = await kernels.start_kernel("kernelyard-curve-forked")
        manager = kernels.get_kernel(kernel_id)
        assert manager.process is not None
        assert manager.process.forked
        async with manager.client() as client:
            await client.wait_for_ready(timeout=60)
            assert (await client.kernel_info(timeout=30)).content["encrypted"] is True
            await drive(manager, client)


async def test_auto_encrypts_only_kernels_whose_spec_supports_it(
    curve_finder: KernelFinder,
) -> None:
    auto = replace(REQUIRED, transport_encryption="auto")
    for kernel, encrypted in [("kernelyard-curve", True), ("kernelyard", False)]:
        async with running_kernel(kernel, finder=curve_finder, options=auto) as (manager, client):
            assert manager.connection_info is not None
            assert manager.connection_info.encrypted is encrypted
            assert (await client.kernel_info(timeout=30)).content["encrypted"] is encrypted


async def test_required_fails_at_start_for_a_kernelspec_without_support(
    curve_finder: KernelFinder, runtime_dir: Path
) -> None:
    manager = KernelManager("python3", finder=curve_finder, options=REQUIRED)
    with pytest.raises(LaunchError, match=r"kernelspec 'python3' does not declare 'curve'"):
        await manager.start()
    assert not runtime_dir.exists() or list(runtime_dir.iterdir()) == []


class IgnoresEncryption(SubprocessProvisioner):
    """Someone else's provisioner that does not apply ``transport_encryption``."""

    async def start(self, spec: Any, **kwargs: Any) -> Any:
        options = replace(kwargs.pop("options"), transport_encryption="disabled")
        return await super().start(spec, options=options, **kwargs)


async def test_required_refuses_a_kernel_that_its_provisioner_left_in_clear_text(
    curve_finder: KernelFinder, runtime_dir: Path
) -> None:
    provisioner = IgnoresEncryption(runtime_dir)
    manager = KernelManager(
        "kernelyard-curve", finder=curve_finder, options=REQUIRED, provisioner=provisioner
    )
    with pytest.raises(LaunchError, match="started kernel 'kernelyard-curve' without CurveZMQ"):
        await manager.start()
    assert manager.process is not None
    assert not manager.process.is_alive()


# -- jupyter_client 8.10 drives our kernel ---------------------------------------------

JUPYTER_CLIENT_MANAGER = """
import json, os, stat, sys
from jupyter_client.manager import KernelManager

km = KernelManager(kernel_name=sys.argv[1], transport_encryption="required")
km.start_kernel()
out = {}
try:
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    with open(km.connection_file) as f:
        on_disk = json.load(f)
    out["keys_in_file"] = on_disk.get("curve_publickey") == km.curve_publickey.decode()
    out["file_mode"] = oct(stat.S_IMODE(os.stat(km.connection_file).st_mode))
    info = kc.kernel_info(reply=True, timeout=30)["content"]
    out["implementation"] = info["implementation"]
    out["encrypted"] = info.get("encrypted")

    def run(code, **kw):
        texts = []
        reply = kc.execute_interactive(
            code, timeout=30, output_hook=lambda m: texts.append(m["content"].get("text", "")), **kw
        )
        return [reply["content"]["status"], "".join(texts)]

    out["execute"] = run("print('out', 6 * 7)")
    out["stdin"] = run(
        "print('got', input('name? '))", allow_stdin=True, stdin_hook=lambda m: kc.input("typed")
    )
    msg_id = kc.execute("import time; print('started', flush=True); time.sleep(30)")
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "stream" and "started" in msg["content"]["text"]:
            break
    km.interrupt_kernel()
    while True:
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    out["interrupt"] = reply["content"].get("ename")
    key = km.curve_publickey
    km.restart_kernel()
    kc.wait_for_ready(timeout=60)
    out["same_key_after_restart"] = km.curve_publickey == key
    out["after_restart"] = run("print('again')")
    kc.stop_channels()
finally:
    km.shutdown_kernel()
out["alive_after_shutdown"] = km.is_alive()
print(json.dumps(out))
"""


def test_jupyter_client_with_required_encryption_drives_our_kernel(tmp_path: Path) -> None:
    # jupyter_client runs as its own program and finds our kernel as users install it.
    install_kernelspec(tmp_path / "data" / "kernels")
    env = {
        "JUPYTER_PATH": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    peer = run_python("-c", JUPYTER_CLIENT_MANAGER, "kernelyard", env=env, timeout=180)
    assert peer.returncode == 0, peer.stderr
    assert json.loads(peer.stdout) == {
        "keys_in_file": True,
        "file_mode": "0o600",
        "implementation": "kernelyard",
        "encrypted": True,
        "execute": ["ok", "out 42\n"],
        "stdin": ["ok", "got typed\n"],
        "interrupt": "KeyboardInterrupt",
        "same_key_after_restart": True,
        "after_restart": ["ok", "again\n"],
        "alive_after_shutdown": False,
    }
    assert list((tmp_path / "runtime").glob("kernel-*.json")) == []


async def test_jupyter_server_with_required_encryption_serves_our_kernel(tmp_path: Path) -> None:
    install_kernelspec(tmp_path / "data" / "kernels")  # JUPYTER_DATA_DIR of the server
    encrypting = "--MappingKernelManager.transport_encryption=required"
    with running_jupyter_server(tmp_path, encrypting, token="curve-token") as server:
        async with server.http() as http:
            model = await start_kernel(http, "kernelyard", settle=False)
            try:
                async with kernel_socket(server, model["id"]) as ws:
                    reply, outputs = await ws.execute("print('behind', 'jupyter_server')")
                    assert reply.content["status"] == "ok"
                    assert stream_text(outputs) == "behind jupyter_server\n"
                    info = ws.message("kernel_info_request")
                    await ws.send(info)
                    with anyio.fail_after(30):
                        while (got := await ws.receive()).msg_type != "kernel_info_reply":
                            pass
                    assert got.content["encrypted"] is True
            finally:
                await http.delete(f"api/kernels/{model['id']}")


# -- proof on the wire ---------------------------------------------------------------


@asynccontextmanager
async def recording_relay(info: ConnectionInfo) -> AsyncIterator[tuple[ConnectionInfo, bytearray]]:
    """A TCP relay in front of each of the kernel's ports; yields the connection info
    that leads through it and every byte that crossed it, both ways.
    """
    recorded = bytearray()
    writers: list[asyncio.StreamWriter] = []
    relays: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                recorded.extend(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def relay_to(port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            relays.add(task := asyncio.current_task())  # type: ignore[arg-type]
            try:
                up_reader, up_writer = await asyncio.open_connection(info.ip, port)
                writers.append(up_writer)
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            finally:
                relays.discard(task)  # type: ignore[arg-type]

        return handle

    servers = [
        await asyncio.start_server(relay_to(port), "127.0.0.1", 0) for port in info.ports.values()
    ]
    try:
        ports = {
            channel: server.sockets[0].getsockname()[1]
            for channel, server in zip(info.ports, servers, strict=True)
        }
        yield info.with_ports(ports), recorded
    finally:
        for server in servers:
            server.close()
        for writer in writers:
            writer.close()
        await asyncio.gather(*relays, return_exceptions=True)
        for server in servers:
            await server.wait_closed()


MARKER = "kernelyard-curve-marker"


@pytest.mark.parametrize("kernel", ["kernelyard-curve", "ipykernel-curve"])
@pytest.mark.parametrize("encryption", ["disabled", "required"])
async def test_the_wire_shows_output_only_without_encryption(
    curve_finder: KernelFinder, kernel: str, encryption: TransportEncryption
) -> None:
    options = replace(REQUIRED, transport_encryption=encryption)
    async with running_kernel(kernel, finder=curve_finder, options=options) as (
        manager,
        _,
    ):
        assert manager.connection_info is not None
        async with (
            recording_relay(manager.connection_info) as (through_relay, recorded),
            KernelClient(through_relay) as client,
        ):
            await client.wait_for_ready(timeout=30)
            out = Collect()
            # The code splits the marker: only the output carries it whole.
            code = f"print({MARKER[:9]!r} + {MARKER[9:]!r})"
            reply = await client.execute_interactive(code, output_hook=out, timeout=30)
            assert reply.content["status"] == "ok"
            assert out.text() == MARKER + "\n"
    assert recorded  # every byte went through the relay
    assert (MARKER.encode() in recorded) is (encryption == "disabled")
    assert (b"execute_request" in recorded) is (encryption == "disabled")


# -- bad input -----------------------------------------------------------------------


async def test_a_client_with_the_wrong_server_key_times_out_and_others_go_on(
    curve_finder: KernelFinder,
) -> None:
    async with running_kernel("kernelyard-curve", finder=curve_finder, options=REQUIRED) as (
        manager,
        client,
    ):
        info = manager.connection_info
        assert info is not None
        public, secret = zmq.curve_keypair()
        stranger = replace(info, curve_publickey=public, curve_secretkey=secret)
        async with KernelClient(stranger, heartbeat=False) as wrong:
            with pytest.raises(ReplyTimeout, match="CurveZMQ-encrypted"):
                await wrong.wait_for_ready(timeout=2)
        plain = replace(info, curve_publickey=b"", curve_secretkey=b"")
        async with KernelClient(plain, heartbeat=False) as clear_text:
            with pytest.raises(ReplyTimeout):
                await clear_text.wait_for_ready(timeout=2)
        reply = await client.execute("1 + 1", timeout=30)
        assert reply.content["status"] == "ok"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"curve_publickey": "short", "curve_secretkey": "short"}, "curve_publickey must be 40"),
        ({"curve_secretkey": "x" * 40}, "curve_secretkey is given without curve_publickey"),
        ("mismatch", "curve_publickey is not the public key of curve_secretkey"),
    ],
)
def test_our_kernel_refuses_a_bad_key_pair(
    tmp_path: Path, fields: dict[str, str] | str, message: str
) -> None:
    if fields == "mismatch":
        public, _ = zmq.curve_keypair()
        _, secret = zmq.curve_keypair()
        fields = {"curve_publickey": public.decode(), "curve_secretkey": secret.decode()}
    assert isinstance(fields, dict)
    path = tmp_path / "kernel.json"
    path.write_text(json.dumps({"transport": "tcp", "ip": "127.0.0.1", "key": "k", **fields}))
    if message.startswith("curve_publickey is not"):
        assert isinstance(read_connection_file(path), ConnectionInfo)  # well-formed, unusable
    else:
        with pytest.raises(ConnectionInfoError, match=message):
            read_connection_file(path)
    kernel = run_python("-m", "kernelyard.kernel", "-f", str(path), timeout=60)
    assert kernel.returncode == 1
    assert message in kernel.stderr
    assert "Traceback" not in kernel.stderr


# -- the server and the CLI ----------------------------------------------------------


@pytest.fixture(scope="module")
def encrypting_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("curve-server")


@pytest.fixture(scope="module")
def encrypting_server(encrypting_home: Path) -> Iterator[Server]:
    home = encrypting_home
    make_spec_dir(home / "data" / "kernels", "plain", argv=IPYKERNEL)  # no supported_encryption
    with running_server(home, "--transport-encryption", "required") as server:
        yield server


@pytest.mark.parametrize("kernel", ["kernelyard", "python3"])
async def test_the_server_encrypts_every_kernel_it_starts(
    encrypting_server: Server, encrypting_home: Path, kernel: str
) -> None:
    async with encrypting_server.http() as http:
        model = await start_kernel(http, kernel)
        try:
            assert model["encrypted"] is True
            runtime = encrypting_home / "runtime"
            on_disk = read_connection_file(runtime / f"kernel-{model['id']}.json")
            assert on_disk.encrypted
            async with kernel_socket(encrypting_server, model["id"], v1=True) as ws:
                reply, outputs = await ws.execute("print('through', 'the server')")
                assert reply.content["status"] == "ok"
                assert stream_text(outputs) == "through the server\n"
            listed = (await http.get("api/kernels")).json()
            assert [k["encrypted"] for k in listed if k["id"] == model["id"]] == [True]
            restarted = await http.post(f"api/kernels/{model['id']}/restart")
            assert restarted.status_code == 200
            assert restarted.json()["encrypted"] is True
        finally:
            await http.delete(f"api/kernels/{model['id']}")
    log = "".join(encrypting_server.log)
    # Its stderr (the kernels' too) has the banner, warnings and errors, never the key.
    assert "default kernel: kernelyard" in log
    assert on_disk.curve_secretkey.decode() not in log


def test_serve_rejects_an_unknown_mode(tmp_path: Path) -> None:
    serve = run_python("-m", "kernelyard", "serve", "--transport-encryption", "always")
    assert serve.returncode == 2
    assert "invalid choice: 'always'" in serve.stderr


@pytest.mark.parametrize("command", [["serve"], ["run", "python3", "-c", "1"]])
def test_encryption_with_a_gateway_is_the_gateways_to_set(command: list[str]) -> None:
    # Refused at start, before anything is started or the gateway is asked.
    gateway = ["--gateway-url", "http://127.0.0.1:9", "--transport-encryption", "required"]
    done = run_python("-m", "kernelyard", command[0], *gateway, *command[1:], timeout=60)
    assert done.returncode == 1
    assert "cannot apply here: set the gateway's own" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("kernel", "transport"), [("kernelyard", "tcp"), ("python3", "tcp"), ("kernelyard", "ipc")]
)
def test_kernelyard_run_with_required_encryption(
    tmp_path: Path, kernel: str, transport: str
) -> None:
    env = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ip")}
    args = [
        "-m",
        "kernelyard",
        "run",
        "--transport",
        transport,
        "--transport-encryption",
        "Required",
    ]
    done = run_python(*args, kernel, "-c", "print('encrypted run')", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "encrypted run\n"


def test_kernelyard_run_required_against_a_spec_without_support(tmp_path: Path) -> None:
    make_spec_dir(tmp_path / "data" / "kernels", "plain", argv=IPYKERNEL)
    env = {"JUPYTER_PATH": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    args = ["-m", "kernelyard", "run", "--transport-encryption", "required", "plain", "-c", "1"]
    done = run_python(*args, env=env, timeout=120)
    assert done.returncode != 0
    assert "kernelspec 'plain' does not declare 'curve'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_the_server_refuses_a_kernel_it_cannot_encrypt(encrypting_server: Server) -> None:
    async with encrypting_server.http() as http:
        specs = (await http.get("api/kernelspecs")).json()["kernelspecs"]
        assert specs["python3"]["spec"]["metadata"]["supported_encryption"] == ["curve"]
        assert specs["kernelyard"]["spec"]["metadata"]["supported_encryption"] == ["curve"]
        model = await start_kernel(http, "plain")  # answered at once; the start then fails
        assert model["execution_state"] == "dead"
        assert "kernelspec 'plain' does not declare 'curve'" in model["reason"]
        assert (await http.delete(f"api/kernels/{model['id']}")).status_code == 204
        assert (await http.get("api/kernels")).json() == []
