"""Interop both ways: jupyter_client drives a kernel we launched; our clients drive ipykernel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernelyard.blocking import (
    BlockingKernelManager,
    BlockingMultiKernelManager,
    run_kernel_blocking,
)
from kernelyard.discovery import KernelFinder
from kernelyard.errors import KernelDied
from kernelyard.provisioning import LaunchOptions

from ..helpers import jupyter_client_peer

pytestmark = pytest.mark.integration

QUIET = LaunchOptions(stderr=None)


def test_jupyter_client_drives_a_kernel_launched_by_our_manager(finder: KernelFinder) -> None:
    # jupyter_client runs as a separate program, as a real peer would.
    with BlockingKernelManager("python3", finder=finder, options=QUIET) as km:
        assert km.async_manager.process is not None
        connection_file = km.async_manager.process.connection_file
        result = jupyter_client_peer(connection_file, "print('via jupyter_client')")
    assert result["status"] == "ok"
    assert result["text"] == "via jupyter_client\n"


def test_blocking_client_and_manager(finder: KernelFinder, runtime_dir: Path) -> None:
    with run_kernel_blocking("python3", finder=finder, options=QUIET) as kc:
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
        with run_kernel_blocking("python3", finder=finder, options=QUIET) as kc:
            return str(kc.execute("1 + 1").content["status"])

    assert asyncio.run(notebook_cell()) == "ok"


def test_blocking_manager_death_and_restart(finder: KernelFinder) -> None:
    with BlockingKernelManager("python3", finder=finder, options=QUIET) as km:
        kc = km.client()
        with kc:
            kc.wait_for_ready(timeout=30)
            km.kill()
            with pytest.raises(KernelDied):
                kc.kernel_info()


def test_blocking_multi_kernel_manager(finder: KernelFinder) -> None:
    with BlockingMultiKernelManager(finder=finder, options=QUIET) as mkm:
        kid = mkm.start_kernel("python3")
        assert kid in mkm
        assert len(mkm) == 1
        with mkm.client(kid) as kc:
            kc.wait_for_ready(timeout=30)
            assert kc.execute("1").content["status"] == "ok"
        mkm.restart_kernel(kid)
        assert [m.state.value for m in mkm.list_kernels()] == ["running"]
        mkm.interrupt_kernel(kid)
        mkm.shutdown_kernel(kid)
        assert mkm.list_kernel_ids() == []


def test_every_blocking_request(finder: KernelFinder) -> None:
    with run_kernel_blocking("python3", finder=finder, options=QUIET) as kc:
        assert kc.kernel_info(timeout=30).content["status"] == "ok"
        assert kc.execute("import os", timeout=30).content["status"] == "ok"
        assert kc.inspect("os", detail_level=0).content["found"] is True
        assert kc.is_complete("if x:").content["status"] == "incomplete"
        assert kc.history(hist_access_type="tail", n=3).content["status"] == "ok"
        assert kc.comm_info().content["status"] == "ok"
        assert kc.comm_open("nobody", comm_id="c9")
        assert kc.comm_msg("c9", {"x": 1})
        assert kc.comm_close("c9")
        msg = kc.message("kernel_info_request")
        assert kc.request(msg, timeout=30).msg_type == "kernel_info_reply"
        subshell = kc.create_subshell().content["subshell_id"]
        assert subshell in kc.list_subshell().content["subshell_id"]
        assert kc.delete_subshell(subshell).content["status"] == "ok"
        assert kc.debug_request({"type": "request", "seq": 1, "command": "debugInfo"}).msg_type
        assert kc.session
        assert kc.connection_info.transport == "tcp"
        kc.send(kc.message("kernel_info_request"))  # fire and forget
        reply = kc.execute_interactive(
            "print(input('?'))", stdin_hook=lambda request: "typed", output_hook=lambda m: None
        )
        assert reply.content["status"] == "ok"
        assert kc.shutdown().content["status"] == "ok"
