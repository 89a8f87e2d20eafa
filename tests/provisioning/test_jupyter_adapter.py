"""jupyter_client provisioners under kernelyard's manager and server, through the adapter:
jupyter_client's own ``local-provisioner``, and a provisioner class the test registers
in the ``jupyter_client.kernel_provisioners`` entry points. Real kernels throughout.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kernelyard.discovery import KernelFinder, KernelSpecProvider
from kernelyard.errors import KernelSpecError, LaunchError
from kernelyard.manager import KernelManager
from kernelyard.manager.hl import running_kernel
from kernelyard.provisioning import LaunchOptions
from kernelyard.provisioning.jupyter import JupyterKernel, JupyterProvisioner

from ..helpers import Collect, make_spec_dir, running
from ..integration.serverutil import kernel_socket, running_server, start_kernel, stream_text

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(120)]

IPYKERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
KERNELYARD = [sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"]
QUIET = LaunchOptions(stderr=None, startup_timeout=60)

#: The test's own provisioner: jupyter_client's LocalProvisioner that marks the kernel's
#: environment and writes down each call it gets.
PLUGIN = """
import json
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Unicode


class RecordingProvisioner(LocalProvisioner):
    record = Unicode("", config=True)
    marker = Unicode("", config=True)

    def _note(self, what):
        with open(self.record, "a") as handle:
            handle.write(json.dumps([what, self.kernel_id]) + "\\n")

    async def pre_launch(self, **kwargs):
        self._note("pre_launch")
        kwargs = await super().pre_launch(**kwargs)
        kwargs["env"]["KERNEL_PROVISIONED_BY"] = self.marker
        return kwargs

    async def launch_kernel(self, cmd, **kwargs):
        self._note("launch_kernel")
        return await super().launch_kernel(cmd, **kwargs)

    async def send_signal(self, signum):
        self._note(f"send_signal {signum}")
        return await super().send_signal(signum)

    async def cleanup(self, restart=False):
        self._note(f"cleanup restart={restart}")
        return await super().cleanup(restart=restart)
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The recording provisioner, installed as an entry point for this process and for
    the processes it starts (a distribution's metadata on the path).
    """
    site = tmp_path / "site"
    dist = site / "kernelyard_test_provisioner-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "kernelyard_test_provisioner.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kernelyard-test-provisioner\n"
                                   "Version: 1.0\n")  # fmt: skip
    (dist / "entry_points.txt").write_text(
        "[jupyter_client.kernel_provisioners]\n"
        "kernelyard-test-recording = kernelyard_test_provisioner:RecordingProvisioner\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    yield site
    sys.modules.pop("kernelyard_test_provisioner", None)


def _recorded(record: Path) -> list[str]:
    return [json.loads(line)[0] for line in record.read_text().splitlines()]


@pytest.mark.parametrize("argv", [IPYKERNEL, KERNELYARD], ids=["ipykernel", "kernelyard"])
async def test_jupyter_clients_local_provisioner_runs_a_kernel_under_our_manager(
    tmp_path: Path, argv: list[str]
) -> None:
    make_spec_dir(tmp_path / "kernels", "k", argv=argv, interrupt_mode="signal")
    finder = KernelFinder([KernelSpecProvider([tmp_path / "kernels"])], runtime_dir=tmp_path / "rt")
    adapter = JupyterProvisioner("local-provisioner", runtime_dir=tmp_path / "rt")
    async with running_kernel("k", finder=finder, options=QUIET, provisioner=adapter) as (
        manager,
        client,
    ):
        process = manager.process
        assert isinstance(process, JupyterKernel)
        assert process.attach_info(manager.kernel_id).location["pid"] > 0
        out = Collect()
        reply = await client.execute_interactive("print(6 * 7)", output_hook=out, timeout=30)
        assert (reply.content["status"], out.text()) == ("ok", "42\n")
        cell = "import time; print('started', flush=True); time.sleep(30)"
        async with running(client, cell) as (_, replies):
            await manager.interrupt()  # a signal, through the provisioner
        assert replies[0].content["ename"] == "KeyboardInterrupt"
        key = manager.connection_info.key if manager.connection_info else b""
        await manager.restart()
        await client.wait_for_ready(timeout=60)
        assert manager.connection_info is not None
        assert manager.connection_info.key == key
        assert manager.process is not process
        assert not process.is_alive()
        reply = await client.execute("1 + 1", timeout=30)
        assert reply.content["status"] == "ok"
        last = manager.process
    assert not last.is_alive()
    with anyio.fail_after(5):  # its cleanup runs as a task: the connection file goes
        while list((tmp_path / "rt").glob("kernel-*.json")):
            await anyio.sleep(0.05)


async def test_a_registered_jupyter_provisioner_is_chosen_by_the_kernelspec(
    tmp_path: Path, plugin: Path
) -> None:
    record = tmp_path / "calls.jsonl"
    config = {"record": str(record), "marker": "the-test"}
    metadata = {"kernel_provisioner": {"provisioner_name": "kernelyard-test-recording",
                                       "config": config}}  # fmt: skip
    make_spec_dir(tmp_path / "kernels", "recorded", argv=IPYKERNEL, metadata=metadata)
    finder = KernelFinder([KernelSpecProvider([tmp_path / "kernels"])], runtime_dir=tmp_path / "rt")
    async with running_kernel("recorded", finder=finder, options=QUIET) as (manager, client):
        assert isinstance(manager.process, JupyterKernel)
        assert manager.process.attach_info(manager.kernel_id).provisioner == (
            "jupyter:kernelyard-test-recording"
        )
        out = Collect()
        code = "import os; print(os.environ['KERNEL_PROVISIONED_BY'])"
        await client.execute_interactive(code, output_hook=out, timeout=30)
        assert out.text() == "the-test\n"
        kernel_id = manager.kernel_id
    with anyio.fail_after(5):
        while "cleanup restart=False" not in _recorded(record):
            await anyio.sleep(0.05)
    calls = _recorded(record)
    assert calls[:2] == ["pre_launch", "launch_kernel"]
    assert {json.loads(line)[1] for line in record.read_text().splitlines()} == {kernel_id}


async def test_a_registered_jupyter_provisioner_serves_kernels_through_the_server(
    tmp_path: Path, plugin: Path
) -> None:
    home = tmp_path / "home"
    record = tmp_path / "calls.jsonl"
    config = {"record": str(record), "marker": "through-the-server"}
    metadata = {"kernel_provisioner": {"provisioner_name": "kernelyard-test-recording",
                                       "config": config}}  # fmt: skip
    make_spec_dir(home / "data" / "kernels", "recorded", argv=KERNELYARD, metadata=metadata)
    with running_server(home) as server:
        async with server.http() as http:
            model = await start_kernel(http, "recorded")
            assert model["execution_state"] == "idle", model
            async with kernel_socket(server, model["id"]) as ws:
                reply, outputs = await ws.execute(
                    "import os; print(os.environ['KERNEL_PROVISIONED_BY'])"
                )
                assert reply.content["status"] == "ok"
                assert stream_text(outputs) == "through-the-server\n"
            assert (await http.post(f"api/kernels/{model['id']}/interrupt")).status_code == 204
            assert (await http.delete(f"api/kernels/{model['id']}")).status_code == 204
    calls = _recorded(record)
    assert calls[:2] == ["pre_launch", "launch_kernel"]
    assert "send_signal 2" in calls
    assert "cleanup restart=False" in calls


async def test_a_failing_jupyter_provisioner_is_a_launch_error(
    tmp_path: Path, plugin: Path
) -> None:
    metadata = {"kernel_provisioner": {"provisioner_name": "kernelyard-test-recording",
                                       "config": {"record": "/nonexistent/dir/calls"}}}  # fmt: skip
    make_spec_dir(tmp_path / "kernels", "broken", argv=IPYKERNEL, metadata=metadata)
    finder = KernelFinder([KernelSpecProvider([tmp_path / "kernels"])], runtime_dir=tmp_path / "rt")
    manager = KernelManager("broken", finder=finder, options=QUIET)
    with pytest.raises(LaunchError, match=r"provisioner 'kernelyard-test-recording' could not "
                       r"start kernel 'broken': FileNotFoundError"):  # fmt: skip
        await manager.start()


def test_a_name_in_neither_group_is_a_kernelspec_error(tmp_path: Path) -> None:
    metadata = {"kernel_provisioner": {"provisioner_name": "no-such-one"}}
    make_spec_dir(tmp_path / "kernels", "nowhere", argv=IPYKERNEL, metadata=metadata)
    finder = KernelFinder([KernelSpecProvider([tmp_path / "kernels"])], runtime_dir=tmp_path / "rt")

    async def start() -> None:
        await KernelManager("nowhere", finder=finder, options=QUIET).start()

    with pytest.raises(KernelSpecError, match=r"jupyter_client's: .*local-provisioner"):
        anyio.run(start)


def test_without_jupyter_client_the_adapter_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "jupyter_client", None)  # as if not installed
    with pytest.raises(KernelSpecError, match=re.escape("pip install 'kernelyard[jupyter]'")):
        JupyterProvisioner.from_spec("k8s", "kubernetes-provisioner", {}, Path("/tmp"))
