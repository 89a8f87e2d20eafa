from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernelyard.discovery import (
    ENTRY_POINT_GROUP,
    KernelFinder,
    KernelSpec,
    KernelSpecProvider,
    PythonEnvProvider,
    load_entry_point_providers,
)
from kernelyard.errors import KernelSpecError, NoSuchKernelSpec

from ..helpers import MakeSpec

PLUGIN = """
from kernelyard.discovery import KernelSpec
from kernelyard.errors import NoSuchKernelSpec

class EchoProvider:
    id = "echo"
    def find_kernels(self):
        yield "loud", KernelSpec(name="loud", argv=("echo", "{connection_file}"))
    def get_spec(self, name):
        if name != "loud":
            raise NoSuchKernelSpec(name)
        return KernelSpec(name="loud", argv=("echo", "{connection_file}"))

class Exploding:
    def __init__(self):
        raise RuntimeError("boom at load")

class NotAProvider:
    pass
"""


def _install_plugin(site: Path, entry_points: str) -> None:
    """A real installed distribution: a module plus a dist-info with entry points."""
    (site / "yard_plugin.py").write_text(PLUGIN)
    dist = site / "yard_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: yard-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(
        site,
        f"""\
        [{ENTRY_POINT_GROUP}]
        echo = yard_plugin:EchoProvider
        exploding = yard_plugin:Exploding
        odd = yard_plugin:NotAProvider
        missing = yard_plugin:DoesNotExist
        """,
    )
    monkeypatch.syspath_prepend(str(site))
    return site


class Broken:
    id = "broken"

    def find_kernels(self) -> Iterator[tuple[str, KernelSpec]]:
        raise RuntimeError("cannot list")

    def get_spec(self, name: str) -> KernelSpec:
        raise RuntimeError("cannot get")


@pytest.fixture
def finder(tmp_path: Path, make_spec: MakeSpec) -> KernelFinder:
    make_spec(tmp_path / "kernels", "python3", display_name="Spec Python")
    make_spec(tmp_path / "kernels", "broken", raw="{")
    return KernelFinder([KernelSpecProvider([tmp_path / "kernels"]), PythonEnvProvider(), Broken()])


def test_type_ids(finder: KernelFinder) -> None:
    assert finder.get_spec("python3").display_name == "Spec Python"
    assert finder.get_spec("spec/python3") == finder.get_spec("Python3")
    assert finder.get_spec("pyimport/ipykernel").name == "ipykernel"


@pytest.mark.parametrize("type_id", ["nope", "spec/nope", "nobody/python3", "spec/", "/x"])
def test_unknown_type_ids(finder: KernelFinder, type_id: str) -> None:
    with pytest.raises(NoSuchKernelSpec) as info:
        finder.get_spec(type_id)
    assert info.value.name == type_id


def test_broken_specs_and_providers_give_clear_errors(finder: KernelFinder) -> None:
    with pytest.raises(KernelSpecError, match="not valid JSON"):
        finder.get_spec("broken")
    with pytest.raises(KernelSpecError, match="provider 'broken' failed"):
        finder.get_spec("broken/anything")
    with pytest.raises(KernelSpecError, match="invalid kernel name"):
        finder.get_spec("spec/bad name")


def test_listing_survives_a_failing_provider(
    finder: KernelFinder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        ids = [type_id for type_id, _ in finder.find_kernels()]
    assert ids == ["python3", "pyimport/kernelyard", "pyimport/ipykernel"]
    assert "failed to list" in caplog.text
    assert finder.default_type_id() == "python3"
    assert finder.default_type_id(preferred=["nope"]) == "python3"
    assert finder.default_type_id(preferred=["pyimport/ipykernel"]) == "pyimport/ipykernel"


def test_duplicate_and_invalid_provider_ids_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    bad = PythonEnvProvider()
    bad.id = "a/b"
    with caplog.at_level(logging.WARNING):
        finder = KernelFinder([KernelSpecProvider([]), KernelSpecProvider([]), bad])
    assert list(finder.providers) == ["spec"]
    assert "second kernel provider" in caplog.text
    assert "invalid id" in caplog.text
    assert finder.default_type_id() is None


def test_entry_point_providers_load_and_bad_ones_are_skipped(
    plugin_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        providers = list(load_entry_point_providers())
    # kernelyard registers its own two providers in the same group.
    assert sorted(p.id for p in providers) == ["echo", "pyimport", "spec"]
    assert "'exploding'" in caplog.text
    assert "'missing'" in caplog.text
    assert "'odd'" in caplog.text
    assert "not a KernelProvider" in caplog.text


def test_default_finder_has_builtins_and_plugins(plugin_site: Path) -> None:
    finder = KernelFinder.default()
    assert list(finder.providers)[:2] == ["spec", "pyimport"]
    assert "echo" in finder.providers
    assert finder.get_spec("echo/loud").argv == ("echo", "{connection_file}")
    assert "echo/loud" in dict(finder.find_kernels())
