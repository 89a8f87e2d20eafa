"""``kernelyard run``, as a user runs it: a real subprocess with a real kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..helpers import make_spec_dir

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    make_spec_dir(
        tmp_path / "kernels",
        "testpy",
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    )
    return {
        **os.environ,
        "JUPYTER_PATH": str(tmp_path),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelyard", "run", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_code_output_result_and_exit_code(env: dict[str, str]) -> None:
    result = _run(
        env, "testpy", "-c", "import sys; print('out'); print('err', file=sys.stderr); 6*7"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "out\n42\n"
    assert "err\n" in result.stderr


@pytest.mark.parametrize("kernel", ["testpy", "pyimport/kernelyard"])
def test_output_below_python_is_shown(env: dict[str, str], kernel: str) -> None:
    # Whether the kernel captures descriptor 2 (ours; ipykernel, but not under pytest)
    # or not, what is written there is shown: as a stream, or as the kernel's stderr,
    # which the runner forwards. A kernel that does both (captures and copies to its
    # stderr, as ipykernel and ours do) shows it twice: better than losing it.
    code = "import os; os.write(1, b'to fd 1\\n'); os.write(2, b'to fd 2\\n');"
    result = _run(env, kernel, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("to fd 1") == 1
    assert result.stderr.count("to fd 2") >= 1


def test_a_file_with_input_and_an_error(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("name = input('name? ')\nprint('hello', name)\nraise ValueError('bad')\n")
    result = _run(env, "testpy", str(script), stdin="Ada\n")
    assert result.returncode == 1
    assert "name? hello Ada\n" in result.stdout
    assert "ValueError" in result.stderr
    assert "bad" in result.stderr


def test_runtime_files_are_removed(env: dict[str, str]) -> None:
    assert _run(env, "testpy", "--transport", "tcp", "-c", "1").returncode == 0
    runtime = Path(env["JUPYTER_RUNTIME_DIR"])
    assert list(runtime.iterdir()) == []


def test_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    missing = _run(env, "nope", "-c", "1")
    assert missing.returncode == 1
    assert "no such kernel type: 'nope'" in missing.stderr
    unreadable = _run(env, "testpy", str(tmp_path / "absent.py"))
    assert unreadable.returncode == 2
    assert "cannot read" in unreadable.stderr
    both = _run(env, "testpy", "-c", "1", "file.py")
    assert both.returncode == 2


def test_ctrl_c_interrupts_the_kernel(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernelyard",
            "run",
            "testpy",
            "-c",
            "import time\nprint('sleeping', flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "sleeping\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert time.monotonic() - started < 15
    assert proc.returncode == 1
    assert "interrupting the kernel" in err
    assert "KeyboardInterrupt" in err
