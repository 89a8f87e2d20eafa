"""``python -m kernelyard.kernel -f CONNECTION_FILE``: run the kernel in this process.

The connection file gives transport, ip, key and ports. Ports that are 0 (or
missing) are chosen by the kernel, which then rewrites the file with them.
When the file names a ``registration_port`` (JEP 66 handshake), the kernel
binds random ports and reports them to the launcher's registration socket in
a signed ``handshake_request``, so a launch never races another process for a
port. A file that does not exist is created (random ports, a fresh key).

The kernel exits when its parent (``JPY_PARENT_PID``) exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from kernelyard.errors import ConnectionInfoError, KernelyardError
from kernelyard.kernel.kernel import Kernel
from kernelyard.provisioning.connection_file import read_connection_file, write_connection_file
from kernelyard.wire.channel import Channel
from kernelyard.wire.codec import decode
from kernelyard.wire.connection import PORT_FIELDS, REGISTRATION_FIELD, ConnectionInfo

__all__ = ["main"]

log = logging.getLogger("kernelyard.kernel")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelyard kernel", description="Run the kernelyard Python kernel."
    )
    parser.add_argument(
        "-f", "--connection-file", required=True, help="the connection file (created if missing)"
    )
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a kernel until it is shut down; returns the exit status."""
    args = _parser().parse_args(argv)
    _log_to(sys.__stderr__, debug=args.debug)
    path = Path(args.connection_file)
    try:
        info = _read_or_new(path)
        parent = os.environ.get("JPY_PARENT_PID", "")
        kernel = Kernel(info, parent_pid=int(parent) if parent.isdigit() else None)
        bound = kernel.bind()
        if bound != info:
            write_connection_file(path, bound)
        if REGISTRATION_FIELD in info.extra:
            _register(kernel, info, bound)
    except (KernelyardError, OSError) as exc:
        print(f"kernelyard kernel: {exc}", file=sys.__stderr__)
        return 1
    # Plots show in the notebook without %matplotlib inline, as with ipykernel: pyplot
    # reads this when it is first imported (an explicit choice, or matplotlib.use(), wins).
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    kernel.start()
    # Descriptor 2 now leads to the frontend: the kernel's own log goes where it went.
    _log_to(kernel.fd_capture.open_original_stderr(), debug=args.debug)
    kernel.run()
    return 0


def _log_to(stream: TextIO | None, *, debug: bool) -> None:
    logging.basicConfig(
        stream=stream,
        level=logging.DEBUG if debug else logging.WARNING,
        format="[kernelyard kernel %(levelname)s] %(message)s",
        force=True,
    )


def _read_or_new(path: Path) -> ConnectionInfo:
    if path.exists():
        return read_connection_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return ConnectionInfo(key=str(uuid.uuid4()).encode())


def _register(kernel: Kernel, info: ConnectionInfo, bound: ConnectionInfo) -> None:
    """Tell the launcher our ports (JEP 66); raises ConnectionInfoError if it does not ack."""
    port = info.extra[REGISTRATION_FIELD]
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConnectionInfoError(f"{REGISTRATION_FIELD} must be a port number, not {port!r}")
    if info.transport == "ipc":
        endpoint = f"ipc://{info.ip}-{port}"
    else:
        endpoint = f"tcp://{'[' + info.ip + ']' if ':' in info.ip else info.ip}:{port}"
    content = {PORT_FIELDS[channel]: bound.ports[channel] for channel in PORT_FIELDS}
    msg = kernel.session.message("handshake_request", content, None)
    reply_frames = kernel.sockets.register(endpoint, kernel.session.frames(msg))
    _, reply = decode(reply_frames, info.signer(), channel=Channel.CONTROL)
    if reply.msg_type != "handshake_reply" or reply.content.get("status") != "ok":
        raise ConnectionInfoError(f"the launcher refused the handshake: {reply.content}")
