"""Installing the kernelyard kernelspec."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kernelyard.discovery import KernelSpecProvider, install_kernelspec, kernelyard_spec
from kernelyard.discovery.ownkernel import PRELOAD
from kernelyard.errors import KernelSpecError


def test_install_writes_the_spec_and_the_logos(tmp_path: Path) -> None:
    target = install_kernelspec(tmp_path / "kernels")
    assert target == tmp_path / "kernels" / "kernelyard"
    data = json.loads((target / "kernel.json").read_text())
    assert data["argv"] == [sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"]
    assert data["interrupt_mode"] == "message"
    assert data["metadata"]["kernelyard"] == {"handshake": True, "preload": list(PRELOAD)}
    assert sorted(p.name for p in target.iterdir()) == [
        "kernel.json",
        "logo-32x32.png",
        "logo-64x64.png",
        "logo-svg.svg",
    ]
    assert (target / "logo-64x64.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = KernelSpecProvider([tmp_path / "kernels"]).get_spec("kernelyard")
    assert spec == kernelyard_spec(resource_dir=target)


def test_install_with_a_name_replaces_an_older_install(tmp_path: Path) -> None:
    install_kernelspec(tmp_path, name="ky-dev", display_name="old")
    target = install_kernelspec(tmp_path, name="ky-dev", display_name="Kernelyard dev")
    assert json.loads((target / "kernel.json").read_text())["display_name"] == "Kernelyard dev"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ky-dev"]  # no staging dir left


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KernelSpecError, match="invalid kernel name"):
        install_kernelspec(tmp_path, name="no/slashes")
    assert list(tmp_path.iterdir()) == []
