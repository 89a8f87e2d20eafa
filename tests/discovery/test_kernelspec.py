from __future__ import annotations

from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpec as JupyterClientKernelSpec

from kernelyard.discovery import (
    check_kernel_name,
    load_kernelspec,
    normalize_kernel_name,
)
from kernelyard.discovery.kernelspec import IPYKERNEL_PRELOAD
from kernelyard.errors import KernelSpecError

from ..helpers import MakeSpec


def test_load_reads_every_field(tmp_path: Path, make_spec: MakeSpec) -> None:
    spec_dir = make_spec(
        tmp_path,
        "MyKernel",
        display_name="My Kernel",
        env={"A": "1"},
        interrupt_mode="Message",
        metadata={"debugger": True},
        kernel_protocol_version="5.5",
    )
    spec = load_kernelspec(spec_dir)
    assert spec.name == "mykernel"
    assert spec.argv == ("python", "-m", "MyKernel", "-f", "{connection_file}")
    assert spec.display_name == "My Kernel"
    assert spec.env == {"A": "1"}
    assert spec.interrupt_mode == "message"
    assert spec.resource_dir == spec_dir


def test_to_dict_matches_jupyter_client(tmp_path: Path, make_spec: MakeSpec) -> None:
    spec_dir = make_spec(tmp_path, "k", display_name="K", metadata={"x": [1]}, env={"B": "2"})
    theirs = JupyterClientKernelSpec.from_resource_dir(str(spec_dir)).to_dict()
    assert load_kernelspec(spec_dir).to_dict() == theirs


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"argv": []}, "argv"),
        ({"argv": "python -m x"}, "argv"),
        ({"argv": ["python", 3]}, "argv"),
        ({"display_name": 5}, "display_name"),
        ({"env": {"A": 1}}, "env"),
        ({"env": ["A"]}, "env"),
        ({"interrupt_mode": "telepathy"}, "interrupt_mode"),
        ({"metadata": []}, "metadata"),
        ({"metadata": {"kernelyard": {"preload": "IPython"}}}, "preload"),
        ({"metadata": {"kernelyard": {"preload": ["IPython", 3]}}}, "preload"),
        ({"metadata": {"kernelyard": {"preload": ["not a module"]}}}, "preload"),
        ({"metadata": {"kernelyard": {"preload": ["os..path"]}}}, "preload"),
    ],
)
def test_invalid_fields_are_named(
    tmp_path: Path, make_spec: MakeSpec, fields: dict[str, object], error: str
) -> None:
    with pytest.raises(KernelSpecError, match=error) as info:
        load_kernelspec(make_spec(tmp_path, "broken", **fields))
    assert info.value.name == "broken"


def test_preload_goes_to_the_launch_spec(tmp_path: Path, make_spec: MakeSpec) -> None:
    metadata = {"kernelyard": {"preload": ["IPython", "kernelyard.kernel.app"]}}
    spec = load_kernelspec(make_spec(tmp_path, "k", metadata=metadata))
    assert spec.launch_spec().preload == ("IPython", "kernelyard.kernel.app")
    assert load_kernelspec(make_spec(tmp_path, "plain")).launch_spec().preload == ()


def test_ipykernels_own_kernelspec_preloads_ipykernel_unless_it_opts_out(
    tmp_path: Path, make_spec: MakeSpec
) -> None:
    argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    installed = load_kernelspec(make_spec(tmp_path, "python3", argv=argv))
    assert installed.launch_spec().preload == IPYKERNEL_PRELOAD
    out = {"kernelyard": {"preload": []}}
    opted = load_kernelspec(make_spec(tmp_path, "spawned", argv=argv, metadata=out))
    assert opted.launch_spec().preload == ()
    other = ["python", "-m", "my_kernel", "-f", "{connection_file}"]
    assert load_kernelspec(make_spec(tmp_path, "mine", argv=other)).launch_spec().preload == ()


@pytest.mark.parametrize(
    ("raw", "error"), [("{not json", "not valid JSON"), ("[1]", "JSON object")]
)
def test_unreadable_kernel_json(tmp_path: Path, make_spec: MakeSpec, raw: str, error: str) -> None:
    with pytest.raises(KernelSpecError, match=error):
        load_kernelspec(make_spec(tmp_path, "broken", raw=raw))


def test_missing_kernel_json(tmp_path: Path) -> None:
    with pytest.raises(KernelSpecError, match="cannot read"):
        load_kernelspec(tmp_path)


@pytest.mark.parametrize("name", ["python3", "Py.3-x_y", "R"])
def test_valid_names(name: str) -> None:
    check_kernel_name(name)
    assert normalize_kernel_name(name) == name.lower()


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "ünï", "semi;colon"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(KernelSpecError, match="invalid kernel name"):
        check_kernel_name(name)
