"""The Slurm node supervisor (``slurm/node.py``) on this machine, without Slurm: the
script runs as the batch step would (its environment, a session of its own) with our
real kernel under it, and the manager's side is the real Callback and NodeLink.
tests/cluster runs the same script on real Slurm nodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from kernelyard.client import KernelClient
from kernelyard.errors import KernelDied, ReplyTimeout
from kernelyard.provisioning.slurm import NODE_SCRIPT
from kernelyard.provisioning.slurm.callback import Callback
from kernelyard.provisioning.slurm.link import NodeLink, Report
from kernelyard.wire import ConnectionInfo

from ..helpers import running

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(90)]

KEY = b"0123456789abcdef0123456789abcdef"
KERNEL_ID = "5b1f0c7e-0000-4000-8000-000000000001"
ARGV = [sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Node:
    """A running supervisor, its link, and what it said of its kernel's exits."""

    def __init__(self, process: asyncio.subprocess.Process, link: NodeLink, report: Report):
        self.process = process
        self.link = link
        self.report = report
        self.exits: list[tuple[int, int]] = []
        self.lost = anyio.Event()
        link.on_exited = lambda pid, code: self.exits.append((pid, code))
        link.on_lost = self.lost.set

    @asynccontextmanager
    async def client(self, report: Report | None = None) -> AsyncIterator[KernelClient]:
        report = report or self.report
        info = ConnectionInfo(key=KEY, ip=report.address, **report.ports)
        async with KernelClient(info) as client:
            await client.wait_for_ready(timeout=30)
            yield client

    async def exited(self, pid: int) -> int:
        with anyio.fail_after(15):
            while not any(p == pid for p, _ in self.exits):
                await anyio.sleep(0.02)
        return next(code for p, code in self.exits if p == pid)


@asynccontextmanager
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with Callback("127.0.0.1", KERNEL_ID, KEY) as callback:
        callback.job_id = "42"
        job = {
            "kernel_id": KERNEL_ID,
            "nonce": callback.nonce,
            "kernel_name": "kernelyard",
            "argv": ARGV,
            "callback": callback.address,
            "signature_scheme": "hmac-sha256",
            "workdir": str(tmp_path),
        }
        env = {
            **os.environ,
            "KERNELYARD_KERNEL": json.dumps(job),
            "KERNELYARD_KEY": KEY.decode(),
            "SLURM_JOB_ID": "42",
            "SLURMD_NODENAME": "here",
            "IPYTHONDIR": str(tmp_path / "ipython"),
        }
        # A session of its own, as slurmstepd gives a batch step: it signals its group.
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(NODE_SCRIPT), env=env, start_new_session=True
        )
        try:
            with anyio.fail_after(30):
                report = await callback.report()
            running = Node(process, callback.link(), report)
        except BaseException:
            process.kill()
            await process.wait()
            raise
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        running.link.close()


async def test_the_supervisor_runs_signals_restarts_and_ends_its_kernel(tmp_path: Path) -> None:
    async with node(tmp_path) as here:
        first = here.report
        assert (first.job_id, first.node, first.address) == ("42", "here", "127.0.0.1")
        assert not list(tmp_path.glob("kernelyard-*/*.json"))  # the keys' file is gone
        async with here.client() as client:
            assert (await client.execute("1 + 1", timeout=30)).content["status"] == "ok"
            # An interrupt over the link reaches the kernel's group, not the supervisor.
            cell = "import time; print('started', flush=True); time.sleep(30)"
            async with running(client, cell) as (_, replies):
                assert here.link.send("signal", signum=int(signal.SIGINT))
            assert replies[0].content["ename"] == "KeyboardInterrupt"
        # Nonsense is ignored: a signal that does not exist, a line signed with another key.
        assert here.link.send("signal", signum=999)
        here.link._writer.write(b'{"body": "{}", "signature": "forged"}\n')
        assert here.link.send("kill")  # the kernel only: the supervisor stays
        assert await here.exited(first.pid) == -signal.SIGKILL
        assert here.process.returncode is None
        second = await here.link.restart("second-start", timeout=30)
        assert second.pid != first.pid
        async with here.client(second) as client:
            assert (await client.execute("'x' in dir()", timeout=30)).content["status"] == "ok"
        assert here.link.send("exit")  # done with it: an ordinary end
        with anyio.fail_after(20):
            assert await here.process.wait() == 0
        assert await here.exited(second.pid) is not None
        assert not list(tmp_path.glob("kernelyard-*"))  # its private directory went too


async def test_without_its_link_the_supervisor_stops_the_kernel_and_ends(tmp_path: Path) -> None:
    async with node(tmp_path) as here:
        pid = here.report.pid
        here.link.close()  # the manager went away
        with anyio.fail_after(20):
            await here.process.wait()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_kernel_that_exits_is_reported_and_the_job_waits_for_a_restart(
    tmp_path: Path,
) -> None:
    async with node(tmp_path) as here:
        async with here.client() as client:
            with pytest.raises((KernelDied, ReplyTimeout)):  # it never answers
                await client.execute("import os; os._exit(3)", timeout=5)
        assert await here.exited(here.report.pid) == 3
        assert here.process.returncode is None  # in its grace: a restart may come
        again = await here.link.restart("after-exit", timeout=30)
        async with here.client(again) as client:
            assert (await client.execute("1", timeout=30)).content["status"] == "ok"
        assert here.link.send("exit")
        with anyio.fail_after(20):
            assert await here.process.wait() == 0
