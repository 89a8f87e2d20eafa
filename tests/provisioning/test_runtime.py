from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kernelyard.provisioning import (
    OWNER_FIELD,
    sweep_stale_connection_files,
    write_connection_file,
)
from kernelyard.wire import Channel, ConnectionInfo


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_sweep_removes_only_our_files_whose_owner_is_gone(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    write_connection_file(tmp_path / "kernel-dead.json", ConnectionInfo(extra={OWNER_FIELD: dead}))
    write_connection_file(tmp_path / "kernel-live.json", ConnectionInfo(extra={OWNER_FIELD: alive}))
    write_connection_file(tmp_path / "kernel-foreign.json", ConnectionInfo())
    (tmp_path / "kernel-garbage.json").write_text("{")
    ipc = ConnectionInfo(transport="ipc", ip=str(tmp_path / "ipc"), extra={OWNER_FIELD: dead})
    ipc = ipc.with_ports({Channel.SHELL: 1, Channel.IOPUB: 2})
    write_connection_file(tmp_path / "kernel-ipc.json", ipc)
    for n in (1, 2):
        (tmp_path / f"ipc-{n}").touch()
    removed = sweep_stale_connection_files(tmp_path)
    assert sorted(p.name for p in removed) == ["kernel-dead.json", "kernel-ipc.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kernel-foreign.json",
        "kernel-garbage.json",
        "kernel-live.json",
    ]


def test_sweep_of_a_missing_dir_is_a_no_op(tmp_path: Path) -> None:
    assert sweep_stale_connection_files(tmp_path / "absent") == []
