"""``kernelyard run KERNEL (-c CODE | FILE)``: run code in a fresh kernel, show what it prints.

Streams stdout and stderr as they come, shows results and displays as text,
prints tracebacks, and exits 1 when the code raised. Ctrl-C interrupts the
kernel (the code stops, the command reports it); a second Ctrl-C quits.
With ``--gateway-url`` (or ``JUPYTER_GATEWAY_URL``) the kernel is started on
that gateway and deleted there at the end; everything else is the same.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from kernelyard.cli import gateway
from kernelyard.client import KernelClient, TextOutput
from kernelyard.gateway import GatewaySettings
from kernelyard.gateway import hl as remote
from kernelyard.manager.hl import running_kernel
from kernelyard.provisioning import ENCRYPTION_MODES, LaunchOptions
from kernelyard.wire import Message

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run code in a fresh kernel and show its output",
        description="Start KERNEL, run CODE or FILE in it, show the output, shut it down. "
        "Exits 1 if the code raised. Ctrl-C interrupts the kernel.",
    )
    parser.add_argument("kernel", metavar="KERNEL", help="kernel type id, such as python3")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--code", help="the code to run")
    source.add_argument("file", nargs="?", metavar="FILE", help="a file whose code to run")
    parser.add_argument(
        "--transport",
        choices=["ipc", "tcp"],
        default="ipc",
        help="how to reach the kernel (default: %(default)s; ipc stays on this machine)",
    )
    parser.add_argument(
        "--transport-encryption",
        type=str.lower,
        choices=ENCRYPTION_MODES,
        default="disabled",
        help="CurveZMQ between this command and the kernel: auto (when the kernelspec "
        "supports it) or required (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )
    gateway.add_arguments(parser, "run the kernel on a remote gateway")
    parser.set_defaults(run=run)


def _read_line(request: Message) -> str:
    """Answer the kernel's input() from our stdin (the prompt goes to stdout)."""
    sys.stdout.write(str(request.content.get("prompt", "")))
    sys.stdout.flush()
    return sys.stdin.readline().rstrip("\n")


#: How the command interrupts its kernel (a signal locally, a REST call on a gateway).
Interrupt = Callable[[], Awaitable[None]]


@asynccontextmanager
async def _kernel(
    args: argparse.Namespace, remote_settings: GatewaySettings | None
) -> AsyncIterator[tuple[Interrupt, KernelClient]]:
    """The kernel the command runs in, local or on the gateway, and its ready client."""
    if remote_settings is not None:
        async with remote.running_kernel(args.kernel, remote_settings) as (kernel, client):
            yield kernel.interrupt, client
        return
    options = LaunchOptions(
        transport=args.transport, transport_encryption=args.transport_encryption
    )
    async with running_kernel(args.kernel, options=options) as (manager, client):
        yield manager.interrupt, client


async def _interrupt_on_ctrl_c(
    interrupt: Interrupt,
    scope: anyio.CancelScope,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()  # from now on a Ctrl-C interrupts the kernel
        interrupted = False
        async for _ in signals:
            if interrupted:  # the second Ctrl-C: stop waiting for the kernel
                scope.cancel()
                return
            interrupted = True
            print("\nkernelyard: interrupting the kernel (Ctrl-C again to quit)", file=sys.stderr)
            await interrupt()


async def _run(args: argparse.Namespace, code: str, remote_settings: GatewaySettings | None) -> int:
    output = TextOutput()
    reply: Message | None = None
    async with (
        _kernel(args, remote_settings) as (interrupt, client),
        anyio.create_task_group() as tg,
    ):
        # Started before the code is sent: the first output can arrive before a task
        # started with start_soon runs, and a Ctrl-C right after it would be asyncio's
        # (it cancels everything) instead of an interrupt.
        await tg.start(_interrupt_on_ctrl_c, interrupt, tg.cancel_scope)
        reply = await client.execute_interactive(
            code, output_hook=output, stdin_hook=_read_line, timeout=args.timeout
        )
        tg.cancel_scope.cancel()
    if reply is None:  # quit with a second Ctrl-C
        return 130
    status = reply.content.get("status")
    return 0 if status == "ok" and not output.errors else 1


def run(args: argparse.Namespace) -> int:
    remote_settings = gateway.gateway_settings(args, os.environ)  # bad values fail here
    gateway.refuse_local_encryption(remote_settings, args.transport_encryption)
    if args.code is not None:
        code = args.code
    else:
        try:
            code = Path(args.file).read_text()
        except OSError as exc:
            print(f"kernelyard: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
    return anyio.run(_run, args, code, remote_settings)
