"""LaunchOptions and AttachInfo: the plain values of the provisioner seam."""

from __future__ import annotations

import dataclasses
import os

import pytest

from kernelyard.errors import ConnectionInfoError
from kernelyard.provisioning import AttachInfo, LaunchOptions
from kernelyard.wire import ConnectionInfo

INFO = ConnectionInfo(ip="127.0.0.1", key=b"k", shell_port=5001, iopub_port=5002)


def test_the_environment_is_ours_unless_given_and_extra_env_comes_last() -> None:
    assert LaunchOptions().environment() is os.environ
    assert LaunchOptions(env={"A": "1"}).environment() == {"A": "1"}
    options = LaunchOptions(env={"A": "1", "B": "2"}, extra_env={"B": "3", "C": "4"})
    assert options.environment() == {"A": "1", "B": "3", "C": "4"}
    with_ours = LaunchOptions(extra_env={"KERNEL_X": "x"}).environment()
    assert with_ours["KERNEL_X"] == "x"
    assert with_ours["PATH"] == os.environ["PATH"]


def test_launch_options_are_frozen_and_a_misspelt_option_is_an_error() -> None:
    options = LaunchOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.cwd = "/tmp"  # type: ignore[misc]
    with pytest.raises(TypeError):
        LaunchOptions(start_timeout=1)  # type: ignore[call-arg]
    assert dataclasses.replace(options, kill_grace=0.1).kill_grace == 0.1


def test_attach_info_round_trips_as_json_data() -> None:
    attach = AttachInfo("local", "k1", INFO, {"pid": 42, "connection_file": "/run/k1.json"})
    data = attach.to_dict()
    assert data["connection_info"]["shell_port"] == 5001
    assert data["connection_info"]["key"] == "k"
    assert AttachInfo.from_dict(data) == attach


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"kernel_id": "k1", "connection_info": {}}, "provisioner"),
        ({"provisioner": "local", "kernel_id": 7, "connection_info": {}}, "kernel_id"),
        ({"provisioner": "local", "kernel_id": "k1", "connection_info": []}, "connection_info"),
        (
            {"provisioner": "local", "kernel_id": "k1", "connection_info": {}, "location": 1},
            "location",
        ),
        ({"provisioner": "local", "kernel_id": "k1", "connection_info": {"key": 5}}, "key"),
    ],
)
def test_malformed_attach_info_is_a_clear_error(data: dict[str, object], match: str) -> None:
    with pytest.raises(ConnectionInfoError, match=match):
        AttachInfo.from_dict(data)
