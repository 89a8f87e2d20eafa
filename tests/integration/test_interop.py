"""Interop both ways: jupyter_client drives a kernel we launched; our clients drive ipykernel."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from kernelyard.blocking import (
    BlockingKernelManager,
    BlockingMultiKernelManager,
    run_kernel_blocking,
)
from kernelyard.discovery import KernelFinder
from kernelyard.errors import KernelDied

pytestmark = pytest.mark.integration


JUPYTER_CLIENT_PEER = """
import sys
from jupyter_client import BlockingKernelClient

client = BlockingKernelClient()
client.load_connection_file(sys.argv[1])
client.start_channels()
client.wait_for_ready(timeout=30)
texts = []
reply = client.execute_interactive(
    "print('via jupyter_client')",
    output_hook=lambda m: texts.append(m["content"].get("text", "")),
    timeout=30,
)
client.stop_channels()
print(reply["content"]["status"], repr("".join(texts)))
"""


def test_jupyter_client_drives_a_kernel_launched_by_our_manager(finder: KernelFinder) -> None:
    # jupyter_client runs as a separate program, as a real peer would.
    with BlockingKernelManager("python3", finder=finder, stderr=None) as km:
        assert km.async_manager.process is not None
        peer = subprocess.run(
            [
                sys.executable,
                "-c",
                JUPYTER_CLIENT_PEER,
                str(km.async_manager.process.connection_file),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert peer.returncode == 0, peer.stderr
    assert peer.stdout.strip() == "ok 'via jupyter_client\\n'"


def test_blocking_client_and_manager(finder: KernelFinder, runtime_dir: Path) -> None:
    with run_kernel_blocking("python3", finder=finder, stderr=None) as kc:
        reply = kc.execute_interactive("x = 21 * 2\nprint(x)", output_hook=lambda m: None)
        assert reply.content["status"] == "ok"
        with kc.iopub() as messages:
            kc.execute("print('seen')")
            texts = []
            for msg in messages:
                if msg.msg_type == "stream":
                    texts.append(msg.content["text"])
                    break
        assert texts == ["seen\n"]
        assert kc.complete("import o").content["status"] == "ok"
        assert kc.is_alive
        assert kc.execution_state in ("idle", "busy")


def test_blocking_calls_work_inside_a_running_event_loop(finder: KernelFinder) -> None:
    async def notebook_cell() -> str:
        # A blocking client used from code that runs on an event loop, as in
        # a notebook cell: no nest_asyncio, no "loop already running".
        with run_kernel_blocking("python3", finder=finder, stderr=None) as kc:
            return str(kc.execute("1 + 1").content["status"])

    assert asyncio.run(notebook_cell()) == "ok"


def test_blocking_manager_death_and_restart(finder: KernelFinder) -> None:
    with BlockingKernelManager("python3", finder=finder, stderr=None) as km:
        kc = km.client()
        with kc:
            kc.wait_for_ready(timeout=30)
            km.kill()
            with pytest.raises(KernelDied):
                kc.kernel_info()


def test_blocking_multi_kernel_manager(finder: KernelFinder) -> None:
    with BlockingMultiKernelManager(finder=finder, manager_options={"stderr": None}) as mkm:
        kid = mkm.start_kernel("python3")
        assert kid in mkm
        assert len(mkm) == 1
        with mkm.client(kid) as kc:
            kc.wait_for_ready(timeout=30)
            assert kc.execute("1").content["status"] == "ok"
        mkm.restart_kernel(kid)
        assert [m.state for m in mkm.list_kernels()] == ["running"]
        mkm.interrupt_kernel(kid)
        mkm.shutdown_kernel(kid)
        assert mkm.list_kernel_ids() == []
