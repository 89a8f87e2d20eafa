from __future__ import annotations

import sys
from pathlib import Path

from kernelyard.provisioning import format_argv, kernel_env


def test_argv_templates_and_this_python() -> None:
    argv = format_argv(
        ["python", "-m", "k", "-f", "{connection_file}", "--res={resource_dir}", "{prefix}", "{x}"],
        connection_file="/run/k.json",
        resource_dir=Path("/specs/k"),
        launch_params={"x": 5},
    )
    assert argv == [
        sys.executable,
        "-m",
        "k",
        "-f",
        "/run/k.json",
        "--res=/specs/k",
        sys.prefix,
        "5",
    ]


def test_unknown_fields_and_other_programs_are_left_alone() -> None:
    argv = format_argv(["/usr/bin/R", "{unknown}", "{connection_file}"], connection_file="c")
    assert argv == ["/usr/bin/R", "{unknown}", "c"]


def test_env_substitution_and_parent_pid() -> None:
    env = kernel_env(
        {"HOME": "/home/a", "PATH": "/bin"},
        {"PATH": "/opt/bin:${PATH}", "X": "$HOME/x", "Y": "${MISSING}"},
        parent_pid=42,
    )
    assert env == {
        "HOME": "/home/a",
        "PATH": "/opt/bin:/bin",
        "X": "/home/a/x",
        "Y": "${MISSING}",
        "JPY_PARENT_PID": "42",
    }
