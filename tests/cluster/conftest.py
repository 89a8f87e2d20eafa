"""The cluster tests' Slurm: one two-node cluster for the session (see ``slurm.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from .slurm import SlurmCluster, slurm_cluster

#: What the cluster runs; `make check` installs the Debian packages that have them.
PROGRAMS = (
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scancel",
    "sinfo",
    "munged",
    "ip",
    "nsenter",
)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.skip("the Slurm cluster needs root (network namespaces, munged as munge)")
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (`make check` installs slurm-wlm, munge)")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
    # Nothing of it may outlive it: its daemons, namespaces, bridge, munge directory.
    assert all(p.poll() is not None for p in cluster.processes.values())
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert cluster.tag not in namespaces, namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert cluster.bridge not in links
    assert not cluster.munge_dir.exists()
