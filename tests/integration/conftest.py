"""Real kernels for integration tests: kernelspecs in a temporary dir, leak checks."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kernelyard.discovery import KernelFinder, KernelSpecProvider

from ..helpers import make_spec_dir

HERE = Path(__file__).parent
IPYKERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
KERNELYARD = [sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def kernels_dir(tmp_path: Path) -> Path:
    kernels = tmp_path / "kernels"
    make_spec_dir(kernels, "python3", argv=IPYKERNEL, display_name="Python 3 (test)")
    make_spec_dir(kernels, "python3-message", argv=IPYKERNEL, interrupt_mode="message")
    make_spec_dir(kernels, "python3-env", argv=IPYKERNEL, env={"KY_TEST": "value-${KY_BASE}"})
    make_spec_dir(
        kernels,
        "exits-at-start",
        argv=[
            sys.executable,
            "-c",
            "import sys; sys.stderr.write('Fatal: cannot bind the shell port\\n'); sys.exit(3)",
        ],
    )
    make_spec_dir(
        kernels,
        "stubborn",
        argv=[sys.executable, str(HERE / "stubborn_kernel.py"), "-f", "{connection_file}"],
    )
    make_spec_dir(kernels, "no-such-program", argv=["/nonexistent/kernel", "{connection_file}"])
    # Our kernel, its IPython history in the test's own directory.
    ipython_env = {"IPYTHONDIR": str(tmp_path / "ipython")}
    handshake = {"kernelyard": {"handshake": True}}
    make_spec_dir(
        kernels,
        "kernelyard",
        argv=KERNELYARD,
        interrupt_mode="message",
        env=ipython_env,
        metadata=handshake,
    )
    make_spec_dir(
        kernels,
        "exits-before-registering",
        argv=[sys.executable, "-c", "import sys; sys.exit('no ports for you')"],
        metadata=handshake,
    )
    make_spec_dir(kernels, "kernelyard-signal", argv=KERNELYARD, env=ipython_env)
    return kernels


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Iterator[Path]:
    runtime = tmp_path / "runtime"
    yield runtime
    leftovers = sorted(p.name for p in runtime.iterdir()) if runtime.exists() else []
    assert leftovers == [], f"files left in the runtime dir: {leftovers}"


@pytest.fixture
def finder(kernels_dir: Path, runtime_dir: Path) -> KernelFinder:
    return KernelFinder([KernelSpecProvider([kernels_dir])], runtime_dir=runtime_dir)


def _children() -> dict[int, str]:
    """Our child processes and their state letter (Z = zombie)."""
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found[int(entry)] = fields[0]
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    before = set(_children())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = {pid: state for pid, state in _children().items() if pid not in before}
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert leaked == {}, f"child processes left behind (pid: state): {leaked}"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True, scope="module")
def no_leaked_descriptors() -> Iterator[None]:
    """Per module, so that the per-test event loop and its own descriptors come and go."""
    # Warm up what lives for the whole process: the zmq context and its I/O thread.
    import zmq

    from kernelyard.blocking.portal import portal
    from kernelyard.transport import context

    context().socket(zmq.DEALER).close(linger=0)
    portal()  # the blocking API's loop thread lives as long as the process
    anyio.run(anyio.sleep, 0, backend_options={"use_uvloop": True})  # uvloop keeps a pipe
    before = _open_fds()
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = _open_fds() - before
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    targets = {}
    for fd in leaked:
        try:
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    assert targets == {}, f"file descriptors left open: {targets}"
