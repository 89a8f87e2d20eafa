"""The test cluster itself: two Slurm nodes, each in its own network namespace."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from .slurm import SlurmCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_job_on_each_node_runs_in_that_nodes_namespace(slurm: SlurmCluster) -> None:
    seen = []
    for name in slurm.node_addresses:
        out = slurm.root / f"{name}.out"
        job = slurm.run(
            "sbatch", "--wait", "-w", name, f"--output={out}",
            "--wrap", "echo $SLURMD_NODENAME $(hostname -I)",
            timeout=60,
        )  # fmt: skip
        assert job.returncode == 0, job.stderr
        seen.append(out.read_text().strip())
    assert seen == [f"{name} {address}" for name, address in slurm.node_addresses.items()]


LISTENER = """
import socket, sys
server = socket.create_server(("0.0.0.0", 0))
open(sys.argv[1] + ".tmp", "w").write(str(server.getsockname()[1]))
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
conn, _ = server.accept()
conn.sendall(b"from the node")
"""


def test_a_port_bound_on_a_node_is_reached_at_its_address_only(slurm: SlurmCluster) -> None:
    script = slurm.root / "listener.py"
    script.write_text(LISTENER)
    port_file = slurm.root / "listener.port"
    job = slurm.run(
        "sbatch",
        "--parsable",
        "-w",
        "n1",
        f"--output={slurm.root / 'listener.out'}",
        "--wrap",
        f"{sys.executable} {script} {port_file}",
    )
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert time.monotonic() < deadline, "the job never bound its port"
            time.sleep(0.05)
        port = int(port_file.read_text())
        with pytest.raises(ConnectionRefusedError):  # not in our namespace
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with socket.create_connection((slurm.node_addresses["n1"], port), timeout=5) as conn:
            assert conn.recv(100) == b"from the node"
    finally:
        slurm.run("scancel", job_id)
    deadline = time.monotonic() + 30
    while job_id in slurm.jobs():
        assert time.monotonic() < deadline, f"job {job_id} still queued"
        time.sleep(0.1)


def test_the_cluster_files_stay_in_its_directory(slurm: SlurmCluster) -> None:
    assert Path(slurm.conf).is_file()
    assert (slurm.root / "slurmctld.log").is_file()
    assert {p.name for p in (slurm.root / "spool").iterdir()} == {"n1", "n2"}
