"""Launching a kernel as a local subprocess.

:func:`launch` picks the ports (held by a :class:`PortReservation` until the
caller saw the kernel answer), writes the connection file atomically with
mode 0600 in the runtime directory (created 0700 when missing), fills the
argv templates, builds the environment and starts the process in its own
session. Relaunching with the same :class:`ConnectionInfo` is an in-place
restart: same key, same ports (when they are still free), same file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import anyio

from kernelyard.errors import LaunchError
from kernelyard.provisioning.connection_file import write_connection_file
from kernelyard.provisioning.forkserver import ForkedProcess, ForkServers
from kernelyard.provisioning.launch import LaunchSpec, format_argv, kernel_env
from kernelyard.provisioning.ports import PortReservation
from kernelyard.provisioning.process import (
    KernelProcess,
    ProcessEvents,
    ProcessHandle,
    StderrSink,
    forward_to_stderr,
)
from kernelyard.provisioning.runtime import OWNER_FIELD, sweep_stale_connection_files
from kernelyard.transport.registration import RegistrationSocket
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import (
    PORT_FIELDS,
    REGISTRATION_FIELD,
    ConnectionInfo,
    Transport,
)
from kernelyard.wire.message import MessageFactory

__all__ = ["connection_file_path", "launch", "new_connection_info"]

log = logging.getLogger(__name__)

_UNIX_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; leave room for "-N"


def connection_file_path(runtime_dir: Path, kernel_id: str) -> Path:
    return runtime_dir / f"kernel-{kernel_id}.json"


def _ipc_prefix(runtime_dir: Path, kernel_id: str) -> str:
    prefix = str(runtime_dir / f"ipc-{kernel_id[:12]}")
    if len(prefix) > _UNIX_SOCKET_PATH_MAX:  # deep runtime dirs: fall back to /tmp
        prefix = os.path.join(tempfile.gettempdir(), f"kernelyard-ipc-{kernel_id[:12]}")
    return prefix


def new_connection_info(
    *,
    kernel_id: str,
    runtime_dir: Path,
    transport: Transport,
    ip: str,
    kernel_name: str,
    registration_port: int | None = None,
) -> tuple[ConnectionInfo, PortReservation | None]:
    """Fresh connection info (random key) and, for tcp, the reservation of its ports.

    With a ``registration_port`` (tcp only) the ports stay 0: the kernel picks
    them and registers them (JEP 66), so nothing is reserved.
    """
    key = secrets.token_hex(16).encode("ascii")
    owner: dict[str, int] = {OWNER_FIELD: os.getpid()}  # lets a later sweep tell a stale file
    if registration_port is not None and transport == "tcp":
        owner[REGISTRATION_FIELD] = registration_port
        info = ConnectionInfo(transport="tcp", ip=ip, key=key, kernel_name=kernel_name, extra=owner)
        return info, None
    if transport == "ipc":
        info = ConnectionInfo(
            transport="ipc",
            ip=_ipc_prefix(runtime_dir, kernel_id),
            key=key,
            kernel_name=kernel_name,
            extra=owner,
        )
        # ipc "ports" only number the socket files: {ip}-1 ... {ip}-5.
        info = info.with_ports({channel: n for n, channel in enumerate(PORT_FIELDS, start=1)})
        return info, None
    reservation = PortReservation.new(ip, len(PORT_FIELDS))
    info = ConnectionInfo(transport="tcp", ip=ip, key=key, kernel_name=kernel_name, extra=owner)
    return info.with_ports(dict(zip(PORT_FIELDS, reservation.ports, strict=True))), reservation


def _reserve_again(info: ConnectionInfo) -> tuple[ConnectionInfo, PortReservation | None]:
    """Hold a restarting kernel's ports again; fresh ones if another process took one."""
    if info.transport == "ipc":
        return info, None
    try:
        # Port 0 (a restart asking for new ports) gets a fresh port from the OS.
        reservation = PortReservation.exact(info.ip, list(info.ports.values()))
    except OSError:
        log.warning("a port of the kernel was taken while it restarted; using new ports")
        reservation = PortReservation.new(info.ip, len(PORT_FIELDS))
    ports: dict[Channel, int] = dict(zip(PORT_FIELDS, reservation.ports, strict=True))
    return info.with_ports(ports), reservation


def _remove_stale_ipc_files(info: ConnectionInfo) -> None:
    for path in info.ipc_paths():
        Path(path).unlink(missing_ok=True)


async def launch(
    spec: LaunchSpec,
    *,
    kernel_id: str,
    runtime_dir: Path,
    connection_info: ConnectionInfo | None = None,
    transport: Transport = "tcp",
    ip: str = "127.0.0.1",
    cwd: str | os.PathLike[str] | None = None,
    launch_params: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    stderr: StderrSink | None = forward_to_stderr,
    handshake_timeout: float = 60.0,
    forks: ForkServers | None = None,
) -> KernelProcess:
    """Start the kernel ``spec`` describes; returns once the process exists.

    ``connection_info`` given means relaunch with it (in-place restart, same
    ports). A fresh tcp launch of a spec with ``handshake`` returns once the
    kernel registered the ports it bound (JEP 66); a kernel that exits or
    stays silent for ``handshake_timeout`` seconds first is a LaunchError.
    ``env`` is the base environment (default: ours). With ``forks``, a spec
    that preloads is forked from its fork server when that is ready. Failing
    to start the program raises LaunchError; readiness is the caller's to
    wait for.
    """
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sweep_stale_connection_files(runtime_dir)
    registration: RegistrationSocket | None = None
    if connection_info is None:
        if spec.handshake and transport == "tcp":
            registration = RegistrationSocket(ip)
        info, reservation = new_connection_info(
            kernel_id=kernel_id,
            runtime_dir=runtime_dir,
            transport=transport,
            ip=ip,
            kernel_name=spec.kernel_name,
            registration_port=registration.port if registration is not None else None,
        )
    else:
        info, reservation = _reserve_again(connection_info)
    _remove_stale_ipc_files(info)
    connection_file = connection_file_path(runtime_dir, kernel_id)
    try:
        write_connection_file(connection_file, info)
        argv = format_argv(
            spec.argv,
            connection_file=str(connection_file),
            resource_dir=spec.resource_dir,
            launch_params=launch_params,
        )
        protocol = ProcessEvents(stderr)
        handle = await _start_process(
            spec,
            argv,
            env=kernel_env(
                env if env is not None else os.environ, spec.env, parent_pid=os.getpid()
            ),
            cwd=cwd,
            protocol=protocol,
            forks=forks,
        )
    except BaseException:
        if reservation is not None:
            reservation.release()
        if registration is not None:
            registration.close()
        if connection_info is None:
            connection_file.unlink(missing_ok=True)
        raise
    process = KernelProcess(
        transport=handle,
        protocol=protocol,
        argv=argv,
        launch_spec=spec,
        connection_info=info,
        connection_file=connection_file,
        reservation=reservation,
        forked=isinstance(handle, ForkedProcess),
    )
    if registration is not None:
        await _complete_handshake(process, registration, timeout=handshake_timeout)
    return process


async def _start_process(
    spec: LaunchSpec,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str | os.PathLike[str] | None,
    protocol: ProcessEvents,
    forks: ForkServers | None,
) -> ProcessHandle:
    """Fork the kernel from its fork server if it can be, else spawn it."""
    if forks is not None:
        workdir = os.path.abspath(cwd if cwd is not None else os.getcwd())
        forked = await forks.spawn(spec, argv, env=env, cwd=workdir, events=protocol)
        if forked is not None:
            return forked
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=None,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise LaunchError(
            f"cannot start kernel {argv[0]!r}: {exc.strerror or exc}", argv=argv
        ) from exc
    return transport


async def _complete_handshake(
    process: KernelProcess, registration: RegistrationSocket, *, timeout: float
) -> None:
    """Wait for the kernel's registration, racing its exit; LaunchError (process gone) if none."""
    info = process.connection_info
    factory = MessageFactory(username="kernelyard", clock=lambda: datetime.now(UTC))
    ports: dict[str, int] = {}
    try:
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:

                async def register() -> None:
                    ports.update(await registration.receive(info.signer(), factory))
                    tg.cancel_scope.cancel()

                async def exited() -> None:
                    await process.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(register)
                tg.start_soon(exited)
    finally:
        registration.close()
    if ports:
        # Registered: a restart reuses these ports, so it must not ask to register again.
        data = {**info.to_dict(), **ports}
        data.pop(REGISTRATION_FIELD)
        process.connection_info = ConnectionInfo.from_dict(data)
        write_connection_file(process.connection_file, process.connection_info)
        return
    gone = process.returncode is not None  # else it stayed silent for ``timeout``
    with anyio.CancelScope(shield=True):
        process.kill()
        code = await process.wait()
        tail = await process.stderr_tail()
        process.cleanup()
    why = f"exited with code {code}" if gone else f"stayed silent for {timeout} s"
    last_line = tail.strip().splitlines()[-1] if tail.strip() else ""
    raise LaunchError(
        f"kernel {process.argv[0]!r} {why} before registering its ports"
        f"{': ' + last_line if last_line else ''}",
        argv=process.argv,
        exit_code=code,
        stderr_tail=tail,
    )
