"""``kernelyard install-kernelspec`` and ``kernelyard kernel``, run as users run them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kernelyard.cli import main

from ..helpers import run_python


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "kernelyard", *args, env=env, timeout=30)


def test_install_for_the_user_then_listed(tmp_path: Path) -> None:
    env = {"JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_PATH": ""}
    result = _run("install-kernelspec", "--display-name", "KY", env=env)
    assert result.returncode == 0, result.stderr
    target = tmp_path / "data" / "kernels" / "kernelyard"
    assert str(target) in result.stdout
    listed = json.loads(_run("kernelspecs", "--json", env=env).stdout)
    assert listed["kernelspecs"]["kernelyard"]["spec"]["display_name"] == "KY"


def test_install_into_a_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-kernelspec", "--prefix", str(tmp_path), "--name", "ky2"]) == 0
    assert (tmp_path / "share" / "jupyter" / "kernels" / "ky2" / "kernel.json").is_file()
    assert "Installed kernelspec ky2" in capsys.readouterr().out


def test_install_into_an_unwritable_place_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run("install-kernelspec", "--prefix", str(blocker))
    assert result.returncode == 1
    assert "cannot install into" in result.stderr


def test_a_bad_kernel_name_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-kernelspec", "--prefix", "/nonexistent", "--name", "a b"]) == 1
    assert "invalid kernel name" in capsys.readouterr().err


def test_kernel_with_an_unreadable_connection_file_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "kernel.json"
    bad.write_text("{not json")
    result = _run("kernel", "-f", str(bad))
    assert result.returncode == 1
    assert "kernelyard kernel:" in result.stderr
