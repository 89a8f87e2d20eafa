"""Our kernelspec search path is jupyter_core's, in every configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jupyter_core.paths import jupyter_path

from kernelyard.discovery import kernel_dirs


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"JUPYTER_PATH": "/opt/a{sep}/opt/b/"},
        {"JUPYTER_DATA_DIR": "/srv/jupyter-data"},
        {"XDG_DATA_HOME": "/srv/xdg"},
        {"JUPYTER_PREFER_ENV_PATH": "1"},
        {"JUPYTER_PREFER_ENV_PATH": "no"},
        {"JUPYTER_PATH": "/x", "JUPYTER_PREFER_ENV_PATH": "0", "XDG_DATA_HOME": "/y"},
    ],
)
def test_same_order_as_jupyter_core(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ("JUPYTER_PATH", "JUPYTER_DATA_DIR", "XDG_DATA_HOME", "JUPYTER_PREFER_ENV_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("JUPYTER_PLATFORM_DIRS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(sep=os.pathsep))
    assert [str(p) for p in kernel_dirs(os.environ)] == jupyter_path("kernels")


def test_environ_is_a_parameter() -> None:
    dirs = kernel_dirs({"JUPYTER_PATH": "/only/here", "JUPYTER_DATA_DIR": "/data"})
    assert dirs[0] == Path("/only/here/kernels")
    assert Path("/data/kernels") in dirs
    assert dirs[-1] == Path("/usr/share/jupyter/kernels")
