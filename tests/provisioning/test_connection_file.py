from __future__ import annotations

import dataclasses
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from jupyter_client.connect import write_connection_file as jc_write_connection_file

from kernelyard.errors import ConnectionInfoError
from kernelyard.provisioning import read_connection_file, write_connection_file
from kernelyard.wire import ConnectionInfo

INFO = ConnectionInfo(
    shell_port=5001, iopub_port=5002, stdin_port=5003, control_port=5004, hb_port=5005, key=b"k"
)


def test_written_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    path = write_connection_file(tmp_path / "kernel-1.json", INFO)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_connection_file(path) == INFO
    assert json.loads(path.read_text())["key"] == "k"


def test_rewrite_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "kernel.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_connection_file(path, INFO)
    assert read_connection_file(path) == INFO
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kernel.json"]


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    path = write_connection_file(tmp_path / "kernel.json", INFO)
    other = dataclasses.replace(INFO, key=b"x" * 5000)
    errors: list[Exception] = []
    done = threading.Event()

    def read_all_the_time() -> None:
        while not done.is_set():
            try:
                assert read_connection_file(path) in (INFO, other)
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    for i in range(200):
        write_connection_file(path, other if i % 2 else INFO)
    done.set()
    reader.join(timeout=10)
    assert errors == []


def test_missing_directory_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_connection_file(tmp_path / "nope" / "kernel.json", INFO)


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConnectionInfoError, match=r"missing\.json: cannot read"):
        read_connection_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"transport": "carrier-pigeon"}')
    with pytest.raises(ConnectionInfoError, match=r"bad\.json: transport") as info:
        read_connection_file(bad)
    assert info.value.path == str(bad)


def test_reads_jupyter_client_connection_files(tmp_path: Path) -> None:
    fname, cfg = jc_write_connection_file(
        str(tmp_path / "jc.json"), ip="127.0.0.1", key=b"secret", kernel_name="python3"
    )
    info = read_connection_file(fname)
    assert info.key == b"secret"
    assert info.shell_port == cfg["shell_port"]
    assert info.kernel_name == "python3"
    assert info.all_ports_bound


def test_jupyter_client_reads_ours(tmp_path: Path) -> None:
    from jupyter_client import BlockingKernelClient

    path = write_connection_file(tmp_path / "ours.json", INFO)
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    assert client.shell_port == 5001
    assert client.session.key == b"k"
    assert client.transport == "tcp"
