"""The launch sequence every local provisioner shares.

:func:`launch` picks the ports (held by a :class:`PortReservation` until the
caller saw the kernel answer), writes the connection file atomically with
mode 0600 in the runtime directory (created 0700 when missing), fills the
argv templates and builds the environment; a :data:`ProcessStarter` starts
the process (see :mod:`kernelyard.provisioning.local`). Relaunching with the
same :class:`ConnectionInfo` is an in-place restart: same key, same ports
(when they are still free), same file, same CurveZMQ keys (a new kernel gets
a pair when ``options.transport_encryption`` and its kernelspec say so; see
:mod:`kernelyard.provisioning.encryption`).
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from kernelyard._clock import utcnow
from kernelyard.errors import LaunchError
from kernelyard.provisioning.connection_file import write_connection_file
from kernelyard.provisioning.encryption import curve_keys_for
from kernelyard.provisioning.forked import ForkedProcess
from kernelyard.provisioning.options import LaunchOptions
from kernelyard.provisioning.ports import PortReservation
from kernelyard.provisioning.process import KernelProcess, ProcessEvents, ProcessHandle
from kernelyard.provisioning.runtime import OWNER_FIELD, sweep_stale_connection_files
from kernelyard.provisioning.spec import LaunchSpec, format_argv, kernel_env
from kernelyard.transport.registration import RegistrationSocket
from kernelyard.wire.channel import Channel
from kernelyard.wire.connection import (
    PORT_FIELDS,
    REGISTRATION_FIELD,
    ConnectionInfo,
    CurveKeys,
    Transport,
)
from kernelyard.wire.message import MessageFactory

__all__ = ["ProcessStarter", "connection_file_path", "launch", "new_connection_info"]

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
    curve_keys: CurveKeys | None = None,
    persist: bool = False,
) -> tuple[ConnectionInfo, PortReservation | None]:
    """Fresh connection info (random key; ``curve_keys`` encrypt it) and, for tcp, the
    reservation of its ports.

    With a ``registration_port`` (tcp only) the ports stay 0: the kernel picks
    them and registers them (JEP 66), so nothing is reserved. A ``persist`` kernel's
    file names no owner: it outlives us, so no sweep of ours may take it.
    """
    # The owner lets a later sweep tell a stale file.
    owner: dict[str, int] = {} if persist else {OWNER_FIELD: os.getpid()}
    if registration_port is not None and transport == "tcp":
        owner[REGISTRATION_FIELD] = registration_port
    registers = REGISTRATION_FIELD in owner
    public, secret = curve_keys or (b"", b"")
    info = ConnectionInfo(
        transport=transport,
        ip=_ipc_prefix(runtime_dir, kernel_id) if transport == "ipc" else ip,
        key=secrets.token_hex(16).encode("ascii"),
        kernel_name=kernel_name,
        extra=owner,
        curve_publickey=public,
        curve_secretkey=secret,
    )
    if registers:
        return info, None
    if transport == "ipc":
        # ipc "ports" only number the socket files: {ip}-1 ... {ip}-5.
        info = info.with_ports({channel: n for n, channel in enumerate(PORT_FIELDS, start=1)})
        return info, None
    reservation = PortReservation.new(ip, len(PORT_FIELDS))
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


#: Starts the kernel's process: ``(spec, argv, env, cwd, events) -> handle``. The local
#: provisioners spawn it, or fork it from a fork server.
ProcessStarter = Callable[
    [LaunchSpec, list[str], dict[str, str], str | os.PathLike[str] | None, ProcessEvents],
    Awaitable[ProcessHandle],
]


async def launch(
    spec: LaunchSpec,
    start_process: ProcessStarter,
    *,
    provisioner: str,
    kernel_id: str,
    runtime_dir: Path,
    options: LaunchOptions,
    connection_info: ConnectionInfo | None = None,
) -> KernelProcess:
    """Start the kernel ``spec`` describes with ``start_process``; returns once the
    process exists.

    ``connection_info`` given means relaunch with it (in-place restart, same
    ports). A fresh tcp launch of a spec with ``handshake`` returns once the
    kernel registered the ports it bound (JEP 66); a kernel that exits or
    stays silent for ``options.startup_timeout`` seconds first is a
    LaunchError. Failing to start the program raises LaunchError; readiness
    is the caller's to wait for.
    """
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sweep_stale_connection_files(runtime_dir)
    info, reservation, registration = _connection(
        spec, kernel_id, runtime_dir, options, connection_info
    )
    _remove_stale_ipc_files(info)
    connection_file = connection_file_path(runtime_dir, kernel_id)
    try:
        write_connection_file(connection_file, info)
        argv = format_argv(
            spec.argv,
            connection_file=str(connection_file),
            resource_dir=spec.resource_dir,
            launch_params=options.launch_params,
        )
        events = ProcessEvents(options.stderr)
        parent = None if options.persist else os.getpid()
        env = kernel_env(options.environment(), spec.env, parent_pid=parent)
        handle = await start_process(spec, argv, env, options.cwd, events)
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
        protocol=events,
        argv=argv,
        launch_spec=spec,
        connection_info=info,
        connection_file=connection_file,
        reservation=reservation,
        provisioner=provisioner,
        forked=isinstance(handle, ForkedProcess),
        persist=options.persist,
    )
    if registration is not None:
        await _complete_handshake(process, registration, timeout=options.startup_timeout)
    return process


def _connection(
    spec: LaunchSpec,
    kernel_id: str,
    runtime_dir: Path,
    options: LaunchOptions,
    previous: ConnectionInfo | None,
) -> tuple[ConnectionInfo, PortReservation | None, RegistrationSocket | None]:
    """The launch's connection info, the ports held for it, and its JEP 66 socket."""
    if previous is not None:
        return (*_reserve_again(previous), None)
    curve_keys = curve_keys_for(spec, options.transport_encryption)
    registration: RegistrationSocket | None = None
    if spec.handshake and options.transport == "tcp":
        registration = RegistrationSocket(options.ip, curve_keys=curve_keys)
    info, reservation = new_connection_info(
        kernel_id=kernel_id,
        runtime_dir=runtime_dir,
        transport=options.transport,
        ip=options.ip,
        kernel_name=spec.kernel_name,
        registration_port=registration.port if registration is not None else None,
        curve_keys=curve_keys,
        persist=options.persist,
    )
    return info, reservation, registration


async def _complete_handshake(
    process: KernelProcess, registration: RegistrationSocket, *, timeout: float
) -> None:
    """Wait for the kernel's registration, racing its exit; LaunchError (process gone) if none."""
    info = process.connection_info
    factory = MessageFactory(username="kernelyard", clock=utcnow)
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
    raise LaunchError.citing_stderr(
        f"kernel {process.argv[0]!r} {why} before registering its ports",
        argv=process.argv,
        exit_code=code,
        stderr_tail=tail,
    )
