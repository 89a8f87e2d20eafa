from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from kernelyard.discovery import KernelProvider, KernelSpecProvider, PythonEnvProvider
from kernelyard.errors import KernelSpecError, NoSuchKernelSpec

from ..helpers import MakeSpec


@pytest.fixture
def two_dirs(tmp_path: Path, make_spec: MakeSpec) -> list[Path]:
    high, low = tmp_path / "high", tmp_path / "low"
    make_spec(high, "Shared", display_name="from high")
    make_spec(low, "shared", display_name="from low")
    make_spec(low, "only-low")
    make_spec(low, "broken", raw="{")
    make_spec(low, "bad name")
    (low / "not-a-kernel").mkdir()
    return [high, low, tmp_path / "missing"]


def test_first_directory_wins_and_names_are_lowercase(two_dirs: list[Path]) -> None:
    provider = KernelSpecProvider(two_dirs)
    specs = dict(provider.find_kernels())
    assert sorted(specs) == ["only-low", "shared"]
    assert specs["shared"].display_name == "from high"
    assert provider.get_spec("SHARED").display_name == "from high"


def test_same_kernels_as_jupyter_client(two_dirs: list[Path]) -> None:
    manager = KernelSpecManager(kernel_dirs=[str(p) for p in two_dirs], ensure_native_kernel=False)
    with pytest.warns(UserWarning, match="Invalid kernelspec directory name"):
        theirs = manager.find_kernel_specs()
    ours = dict(KernelSpecProvider(two_dirs).find_kernels())
    # jupyter_client lists the broken spec and the invalid name (with a
    # warning) and fails when they are used; we skip both at once.
    assert set(ours) == set(theirs) - {"broken", "bad name"}
    for name, spec in ours.items():
        assert str(spec.resource_dir) == theirs[name]


def test_broken_spec_is_skipped_with_a_warning_but_an_error_by_name(
    two_dirs: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    provider = KernelSpecProvider(two_dirs)
    with caplog.at_level(logging.WARNING):
        names = [name for name, _ in provider.find_kernels()]
    assert "broken" not in names
    assert any("broken" in record.getMessage() for record in caplog.records)
    with pytest.raises(KernelSpecError, match="not valid JSON"):
        provider.get_spec("broken")


def test_unknown_and_invalid_names(two_dirs: list[Path]) -> None:
    provider = KernelSpecProvider(two_dirs)
    with pytest.raises(NoSuchKernelSpec) as info:
        provider.get_spec("nope")
    assert isinstance(info.value, LookupError)
    with pytest.raises(KernelSpecError, match="invalid kernel name"):
        provider.get_spec("bad name")


def test_default_dirs_come_from_the_environment(tmp_path: Path, make_spec: MakeSpec) -> None:
    make_spec(tmp_path / "kernels", "fromenv")
    provider = KernelSpecProvider(environ={"JUPYTER_PATH": str(tmp_path)})
    assert provider.dirs[0] == tmp_path / "kernels"
    assert provider.get_spec("fromenv").name == "fromenv"


def test_python_env_provider_offers_ipykernel() -> None:
    provider = PythonEnvProvider()
    assert isinstance(provider, KernelProvider)
    specs = dict(provider.find_kernels())
    spec = specs["ipykernel"]
    assert spec.argv[:3] == (sys.executable, "-m", "ipykernel_launcher")
    assert spec.resource_dir is not None
    assert (spec.resource_dir / "logo-64x64.png").is_file()
    assert provider.get_spec("IPyKernel") == spec
    with pytest.raises(NoSuchKernelSpec):
        provider.get_spec("nope")


def test_python_env_provider_without_ipykernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Python without ipykernel: hide it from the import system for this test.
    monkeypatch.setitem(sys.modules, "ipykernel", None)
    assert list(dict(PythonEnvProvider().find_kernels())) == ["kernelyard"]


def test_python_env_provider_offers_our_kernel_without_install() -> None:
    spec = PythonEnvProvider().get_spec("kernelyard")
    assert spec.argv[:3] == (sys.executable, "-m", "kernelyard.kernel")
    assert spec.interrupt_mode == "message"
    assert spec.supports_handshake
    assert spec.launch_spec().handshake
    assert spec.resource_dir is not None
    assert (spec.resource_dir / "logo-64x64.png").is_file()
