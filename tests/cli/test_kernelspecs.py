"""``kernelyard kernelspecs``, run as users run it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernelyard.cli import main

from ..helpers import MakeSpec, run_python


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "kernelyard", *args, env=env, timeout=30)


def test_json_lists_ipykernels_python3_like_the_rest_api() -> None:
    result = _run("kernelspecs", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["default"] == "python3"
    python3 = listing["kernelspecs"]["python3"]
    assert python3["name"] == "python3"
    assert "ipykernel_launcher" in python3["spec"]["argv"]
    assert python3["spec"]["language"] == "python"
    assert python3["resources"]["logo-64x64"] == "/kernelspecs/python3/logo-64x64.png"
    assert "pyimport/ipykernel" in listing["kernelspecs"]


def test_table_marks_the_default_and_shows_jupyter_path_kernels(
    tmp_path: Path, make_spec: MakeSpec
) -> None:
    make_spec(tmp_path / "kernels", "extra-kernel", display_name="Extra Kernel", language="lisp")
    make_spec(tmp_path / "kernels", "broken", raw="{")
    result = _run("kernelspecs", env={"JUPYTER_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DISPLAY", "NAME", "LANGUAGE", "LOCATION"]
    assert any(line.startswith("*python3 ") for line in lines)
    extra = next(line for line in lines if "extra-kernel" in line)
    assert "Extra Kernel" in extra
    assert "lisp" in extra
    assert "broken" in result.stderr  # the warning, on stderr
    assert "broken" not in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kernelyard"
    result = subprocess.run(
        [str(script), "kernelspecs", "--json"], capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert "python3" in json.loads(result.stdout)["kernelspecs"]


def test_unknown_command_is_a_usage_error() -> None:
    result = _run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_in_process_main_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert main(["kernelspecs", "--json"]) == 0
    assert "python3" in json.loads(capsys.readouterr().out)["kernelspecs"]


def test_in_process_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert main(["kernelspecs"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "* default: python3"
    assert "pyimport/ipykernel" in out
