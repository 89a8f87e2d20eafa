"""The Slurm provisioner's parts that need no cluster: its config, its callback port."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
import pytest

from kernelyard.discovery import KernelSpec
from kernelyard.errors import KernelSpecError
from kernelyard.provisioning.registry import provisioner_for
from kernelyard.provisioning.slurm import SlurmConfig, SlurmProvisioner
from kernelyard.provisioning.slurm.callback import Callback
from kernelyard.provisioning.slurm.commands import JobState
from kernelyard.provisioning.slurm.node import signature

pytestmark = pytest.mark.anyio

KEY = b"the-kernel-key"
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_config_becomes_sbatch_arguments() -> None:
    config = SlurmConfig.from_config(
        "k",
        {"partition": "gpu", "account": "lab", "time": "1:00:00", "cpus": 4, "memory": "2G",
         "extra_args": ["--qos=short"], "queue_timeout": 60},
    )  # fmt: skip
    assert config.sbatch_args("abc") == [
        "--job-name=kernelyard-abc",
        "--output=/tmp/kernelyard-%j.out",
        "--partition=gpu",
        "--account=lab",
        "--time=1:00:00",
        "--mem=2G",
        "--cpus-per-task=4",
        "--qos=short",
    ]
    assert config.queue_timeout == 60.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"partitions": "x"}, "has no setting 'partitions'"),
        ({"cpus": "4"}, "cpus must be a int"),
        ({"cpus": True}, "cpus must be a int"),
        ({"queue_timeout": 0}, "queue_timeout must be a positive number"),
        ({"extra_args": "--qos=x"}, "extra_args must be a list of strings"),
    ],
)
def test_a_bad_config_names_the_kernelspec_and_the_setting(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(KernelSpecError, match=f"kernelspec 'k': .*{message}"):
        SlurmConfig.from_config("k", config)


def test_a_kernelspec_chooses_its_provisioner_by_entry_point(tmp_path: Any) -> None:
    metadata = {"kernel_provisioner": {"provisioner_name": "kernelyard-slurm", "config": {}}}
    spec = KernelSpec.from_dict("k", {"argv": ["k"], "metadata": metadata}).launch_spec()
    assert isinstance(provisioner_for(spec, tmp_path), SlurmProvisioner)
    local = {"kernel_provisioner": {"provisioner_name": "local-provisioner"}}  # jupyter_client's
    assert (
        KernelSpec.from_dict("k", {"argv": ["k"], "metadata": local}).launch_spec().provisioner
        == ""
    )
    with pytest.raises(KernelSpecError, match=r"metadata\.kernel_provisioner must be an object"):
        KernelSpec.from_dict("k", {"argv": ["k"], "metadata": {"kernel_provisioner": "slurm"}})


def test_job_states_as_exit_codes() -> None:
    assert JobState("COMPLETED", exit_code=0).returncode == 0
    assert JobState("FAILED", exit_code=1).returncode == 1
    assert JobState("CANCELLED", exit_code=0, exit_signal=9).returncode == -9
    assert JobState("RUNNING").returncode is None
    assert JobState("TIMEOUT").ended
    assert not JobState("PENDING").ended


async def _send(port: int, line: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line + b"\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def _report(kernel_id: str = "kid", **body: Any) -> tuple[bytes, bytes]:
    data = json.dumps({"kernel_id": kernel_id, "job_id": "7", "node": "n1", "address": "10.0.0.2",
                       "pid": 42, "ports": PORTS, **body}).encode()  # fmt: skip
    return data, json.dumps({"body": data.decode(), "signature": signature(KEY, data)}).encode()


async def test_only_a_report_signed_with_the_kernels_key_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Callback("127.0.0.1", "kid", KEY) as callback:
        body, _ = _report()
        forged = json.dumps({"body": body.decode(), "signature": signature(b"guess", body)})
        await _send(callback.port, forged.encode())
        await _send(callback.port, forged.encode())
        await _send(callback.port, b"not json")
        await _send(callback.port, _report(kernel_id="other")[1])
        await _send(callback.port, _report(ports={"shell_port": 1})[1])
        with anyio.move_on_after(0.3):
            await callback.report()
            pytest.fail("a forged or foreign report was taken")
        await _send(callback.port, _report()[1])
        with anyio.fail_after(5):
            report = await callback.report()
    assert (report.job_id, report.node, report.address, report.pid) == ("7", "n1", "10.0.0.2", 42)
    assert report.ports == PORTS
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once, however many came
    assert "wrong signature" in warnings[0].getMessage()
