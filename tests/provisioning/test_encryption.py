"""The transport_encryption rule (jupyter_client 8.10's) and what happens without Curve."""

from __future__ import annotations

from typing import Any

import pytest
import zmq

from kernelyard.discovery import KernelSpec
from kernelyard.errors import EncryptionUnavailable, LaunchError
from kernelyard.provisioning import ENCRYPTION_MODES, LaunchOptions
from kernelyard.provisioning.encryption import curve_keys_for, stricter
from kernelyard.transport import open_channel
from kernelyard.transport.curve import check_keypair, new_keypair
from kernelyard.transport.kernel_io import KernelSockets
from kernelyard.transport.registration import RegistrationSocket
from kernelyard.wire import Channel, ConnectionInfo


def spec(metadata: dict[str, Any]) -> KernelSpec:
    return KernelSpec.from_dict("k", {"argv": ["k", "{connection_file}"], "metadata": metadata})


@pytest.mark.parametrize(
    ("declared", "supports"),
    [
        ({"supported_encryption": ["curve"]}, True),  # ipykernel 7.4 writes a list
        ({"supported_encryption": "curve"}, True),  # the JEP's examples: a string
        ({"supported_encryption": [" CURVE "]}, True),
        ({"supported_encryption": ["tls"]}, False),
        ({"supported_encryption": 1}, False),
        ({}, False),
    ],
)
def test_what_a_kernelspec_declares(declared: dict[str, Any], supports: bool) -> None:
    assert spec(declared).launch_spec().supports_curve is supports


def test_the_rule_by_mode_and_kernelspec() -> None:
    curve = spec({"supported_encryption": ["curve"]}).launch_spec()
    plain = spec({}).launch_spec()
    assert curve_keys_for(curve, "disabled") is None
    assert curve_keys_for(plain, "disabled") is None
    assert curve_keys_for(plain, "auto") is None
    pair = curve_keys_for(curve, "auto")
    assert pair is not None
    check_keypair(pair)  # a real pair: the public key is the secret key's
    again = curve_keys_for(curve, "required")
    assert again is not None
    assert again != pair  # fresh per kernel
    with pytest.raises(LaunchError, match="kernelspec 'k' does not declare 'curve'"):
        curve_keys_for(plain, "required")


def test_a_mode_that_does_not_exist_is_refused() -> None:
    assert ENCRYPTION_MODES == ("disabled", "auto", "required")
    # Any case, as jupyter_client's CaselessStrEnum takes it.
    assert LaunchOptions(transport_encryption="Required").transport_encryption == "required"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="transport_encryption must be one of"):
        LaunchOptions(transport_encryption="always")  # type: ignore[arg-type]


def test_a_mismatched_pair_is_refused() -> None:
    public, _ = new_keypair()
    _, secret = new_keypair()
    with pytest.raises(ValueError, match="is not the public key of curve_secretkey"):
        check_keypair((public, secret))


def test_without_curve_in_libzmq_every_use_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pyzmq's wheels always have Curve; a libzmq built without it says so through has().
    real_has = zmq.has
    monkeypatch.setattr(zmq, "has", lambda name: False if name == "curve" else real_has(name))
    LaunchOptions(transport_encryption="disabled")  # clear text needs nothing
    for mode in ("auto", "required"):
        with pytest.raises(EncryptionUnavailable, match=f"transport_encryption='{mode}' needs"):
            LaunchOptions(transport_encryption=mode)  # type: ignore[arg-type]
    with pytest.raises(EncryptionUnavailable, match="built without it"):
        new_keypair()
    public, secret = zmq.curve_keypair()
    encrypted = ConnectionInfo(shell_port=1, curve_publickey=public, curve_secretkey=secret)
    with pytest.raises(EncryptionUnavailable, match="an encrypted connection needs CurveZMQ"):
        open_channel(encrypted, Channel.SHELL)
    with pytest.raises(EncryptionUnavailable):
        RegistrationSocket("127.0.0.1", curve_keys=(public, secret))
    sockets = KernelSockets(encrypted.with_ports({Channel.SHELL: 0}), {}, on_subscribe=print)
    try:
        with pytest.raises(EncryptionUnavailable):
            sockets.bind()
    finally:
        sockets.close()


def test_the_stricter_of_two_modes() -> None:
    assert stricter("disabled", "auto") == stricter("auto", "disabled") == "auto"
    assert stricter("required", "auto") == "required"
    assert stricter("disabled", "disabled") == "disabled"
