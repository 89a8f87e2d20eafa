"""Running out of sockets: a clear error, and nothing else harmed.

A server holding a few hundred kernels used to stop at libzmq's default of
1,023 sockets per context (the channels of about 200 kernels), and the
channels that failed to open left a task group entered in the caller's task:
every start after it failed with anyio's "Attempted to exit a cancel scope
that isn't the current task's current cancel scope". The context is now
sized from the open-file limit, and a socket that cannot be made is a
ChannelClosed for that start alone. The exhaustion runs in a child process
whose context is made small on purpose, with real kernels.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest
import zmq

from kernelyard.transport.sockets import MAX_SOCKETS, context, raise_open_file_limit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXHAUST = textwrap.dedent(
    """
    import contextlib, anyio, zmq
    from kernelyard.transport import sockets
    ctx = zmq.Context.instance()
    ctx.set(zmq.MAX_SOCKETS, 24)
    sockets._sized.add(id(ctx))  # as if the open-file limit were that small
    from kernelyard.errors import KernelyardError
    from kernelyard.manager import MultiKernelManager
    from kernelyard.provisioning import LaunchOptions

    async def main():
        async with MultiKernelManager(options=LaunchOptions(stderr=None)) as kernels:
            async with contextlib.AsyncExitStack() as held:
                opened, refused = 0, []
                for _ in range(12):
                    try:
                        kernel_id = await kernels.start_kernel("kernelyard")
                        await held.enter_async_context(kernels.open_channels(kernel_id))
                        opened += 1
                    except KernelyardError as exc:
                        refused.append(f"{type(exc).__name__}: {exc}")
                print("opened", opened)
                print("refused", refused[0] if refused else "none")
                await held.aclose()
                # Sockets freed: the next start works again, in the same task.
                kernel_id = await kernels.start_kernel("kernelyard")
                async with kernels.open_channels(kernel_id):
                    print("after", "ok")

    anyio.run(main)
    """
)


def test_running_out_of_sockets_fails_that_start_alone() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXHAUST], capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert 0 < int(lines["opened"]) < 12
    assert "Too many open files" in lines["refused"]
    assert lines["refused"].startswith("ChannelClosed")
    assert lines["after"] == "ok"
    assert "cancel scope" not in done.stderr


def test_the_context_holds_as_many_sockets_as_the_process_may_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # libzmq's own default is 1,023; ours follows the limit (20,000 on our machines).
    assert context().get(zmq.MAX_SOCKETS) >= min(soft, MAX_SOCKETS)
    raised = raise_open_file_limit()
    assert soft <= raised <= (MAX_SOCKETS if hard == resource.RLIM_INFINITY else hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
