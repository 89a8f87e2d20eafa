"""The REST shapes the server builds from backend values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from kernelyard.backend import KernelSpecs
from kernelyard.discovery import KernelSpec, load_kernelspec
from kernelyard.server.models import format_time, kernelspec_model, kernelspecs_body

from ..helpers import MakeSpec


def test_model_lists_resources_as_urls(tmp_path: Path, make_spec: MakeSpec) -> None:
    spec_dir = make_spec(tmp_path, "k")
    for name in ("logo-64x64.png", "logo-svg.svg", "kernel.js", "kernel.css", "other.txt"):
        (spec_dir / name).write_bytes(b"")
    model = kernelspec_model("k", load_kernelspec(spec_dir), base_url="/base/")
    assert model["name"] == "k"
    assert model["spec"]["argv"][0] == "python"
    assert model["resources"] == {
        "kernel.css": "/base/kernelspecs/k/kernel.css",
        "kernel.js": "/base/kernelspecs/k/kernel.js",
        "logo-64x64": "/base/kernelspecs/k/logo-64x64.png",
        "logo-svg": "/base/kernelspecs/k/logo-svg.svg",
    }


def test_model_without_resource_dir() -> None:
    spec = KernelSpec(name="x", argv=("x",))
    assert kernelspec_model("x", spec)["resources"] == {}


def test_the_listing_body_names_the_default() -> None:
    spec = KernelSpec(name="x", argv=("x",), display_name="X")
    body = kernelspecs_body(KernelSpecs({"x": spec}, "x"), base_url="/b/")
    assert body["default"] == "x"
    assert body["kernelspecs"]["x"]["spec"]["display_name"] == "X"


def test_times_have_six_digits_and_a_z_in_utc() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(local) == "2026-01-02T03:04:05.000000Z"
    assert format_time(datetime(2026, 1, 2, tzinfo=UTC)).endswith("00:00:00.000000Z")
