from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelyard.errors import ConnectionInfoError
from kernelyard.wire import Channel, ConnectionInfo

TCP = {
    "transport": "tcp",
    "ip": "127.0.0.1",
    "shell_port": 5001,
    "iopub_port": 5002,
    "stdin_port": 5003,
    "control_port": 5004,
    "hb_port": 5005,
    "key": "c2VjcmV0",
    "signature_scheme": "hmac-sha256",
    "kernel_name": "python3",
}


def test_tcp_endpoints_and_signer() -> None:
    info = ConnectionInfo.from_dict(TCP)
    assert info.endpoint(Channel.SHELL) == "tcp://127.0.0.1:5001"
    assert info.endpoint(Channel.HEARTBEAT) == "tcp://127.0.0.1:5005"
    assert info.key == b"c2VjcmV0"
    assert info.signer().enabled
    assert info.all_ports_bound


def test_ipv6_and_ipc_endpoints() -> None:
    assert ConnectionInfo(ip="::1", shell_port=1).endpoint(Channel.SHELL) == "tcp://[::1]:1"
    ipc = ConnectionInfo(transport="ipc", ip="/tmp/k", shell_port=1, iopub_port=2)
    assert ipc.endpoint(Channel.IOPUB) == "ipc:///tmp/k-2"
    assert ipc.ipc_paths() == ["/tmp/k-1", "/tmp/k-2"]
    assert ConnectionInfo(shell_port=1).ipc_paths() == []


def test_dict_and_json_round_trip_keep_unknown_fields() -> None:
    data = {**TCP, "jupyter_session": "notebook.ipynb"}
    info = ConnectionInfo.from_dict(data)
    assert info.extra == {"jupyter_session": "notebook.ipynb"}
    assert info.to_dict() == data
    assert ConnectionInfo.from_json(info.to_json()) == info


def test_missing_ports_and_key_mean_unbound_and_unsigned() -> None:
    info = ConnectionInfo.from_dict({"transport": "tcp", "ip": "127.0.0.1"})
    assert info.ports == dict.fromkeys(Channel, 0)
    assert not info.all_ports_bound
    assert not info.signer().enabled
    bound = info.with_ports({Channel.SHELL: 7000})
    assert bound.shell_port == 7000
    assert bound.iopub_port == 0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"transport": "udp"}, "transport"),
        ({"transport": 3}, "transport must be a string"),
        ({"ip": ""}, "ip"),
        ({"shell_port": 70000}, "shell_port"),
        ({"hb_port": "5005"}, "hb_port"),
        ({"hb_port": True}, "hb_port"),
        ({"iopub_port": 5001}, "share a port"),
        ({"key": 12}, "key"),
        ({"signature_scheme": "hmac-nope"}, "signature_scheme"),
    ],
)
def test_invalid_connection_info_is_named(change: dict[str, object], error: str) -> None:
    with pytest.raises(ConnectionInfoError, match=error):
        ConnectionInfo.from_dict({**TCP, **change})


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(ConnectionInfoError, match="JSON object"):
        ConnectionInfo.from_json(b"[]")
    with pytest.raises(ConnectionInfoError, match="invalid JSON"):
        ConnectionInfo.from_json(b"{")
    with pytest.raises(ConnectionInfoError, match="JSON object"):
        ConnectionInfo.from_dict([])  # type: ignore[arg-type]


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_connection_info_error(data: bytes) -> None:
    with contextlib.suppress(ConnectionInfoError):
        ConnectionInfo.from_json(data)


@given(
    st.lists(st.integers(1, 65535), min_size=5, max_size=5, unique=True),
    st.sampled_from(["tcp", "ipc"]),
    st.text(min_size=1, max_size=20),
)
def test_round_trip(ports: list[int], transport: str, key: str) -> None:
    data = {**TCP, "transport": transport, "key": key}
    data.update(
        zip(
            ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"],
            ports,
            strict=True,
        )
    )
    info = ConnectionInfo.from_dict(data)
    assert ConnectionInfo.from_json(info.to_json()) == info


# -- CurveZMQ keys ----------------------------------------------------------------------

#: A pair zmq.curve_keypair() made (Z85, 40 characters each), as jupyter_client writes it.
PUBLIC = "x*VD1QBL=cv9IqfhrxwbFhu2BuS)5#g%6I{&/LAK"
SECRET = "AnnFc1f=*n^heCO/@U%[mSX+c}.lFb+SQ3=Fn?qI"


def test_curve_keys_round_trip_as_jupyter_client_writes_them() -> None:
    data = {**TCP, "curve_publickey": PUBLIC, "curve_secretkey": SECRET}
    info = ConnectionInfo.from_dict(data)
    assert info.encrypted
    assert info.curve_keys == (PUBLIC.encode(), SECRET.encode())
    assert info.to_dict() == data
    assert ConnectionInfo.from_json(info.to_json()) == info
    assert info.with_ports({Channel.SHELL: 7000}).curve_keys == info.curve_keys


def test_no_keys_means_clear_text_and_none_are_written() -> None:
    info = ConnectionInfo.from_dict({**TCP, "curve_publickey": None, "curve_secretkey": None})
    assert not info.encrypted
    assert info.curve_keys is None
    assert "curve_publickey" not in info.to_dict()
    assert "curve_secretkey" not in info.to_dict()


def test_the_repr_shows_no_key() -> None:
    info = ConnectionInfo.from_dict({**TCP, "curve_publickey": PUBLIC, "curve_secretkey": SECRET})
    text = repr(info)
    assert SECRET not in text
    assert PUBLIC not in text
    assert TCP["key"] not in text
    assert "shell_port=5001" in text


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"curve_secretkey": SECRET}, "curve_secretkey is given without curve_publickey"),
        ({"curve_publickey": PUBLIC}, "curve_publickey is given without curve_secretkey"),
        ({"curve_publickey": PUBLIC[:-1], "curve_secretkey": SECRET}, "curve_publickey must be 40"),
        (
            {"curve_publickey": PUBLIC, "curve_secretkey": SECRET + "x"},
            "curve_secretkey must be 40",
        ),
        ({"curve_publickey": PUBLIC, "curve_secretkey": 'x"' + SECRET[2:]}, "curve_secretkey has"),
        ({"curve_publickey": "#" * 40, "curve_secretkey": SECRET}, "curve_publickey is not valid"),
        ({"curve_publickey": 42, "curve_secretkey": SECRET}, "curve_publickey must be a string"),
    ],
)
def test_a_malformed_key_pair_names_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ConnectionInfoError, match=named) as raised:
        ConnectionInfo.from_dict({**TCP, **fields})
    message = str(raised.value)
    for value in fields.values():  # not even a part of a (maybe secret) key is quoted
        text = str(value)
        assert not any(text[i : i + 8] in message for i in range(max(1, len(text) - 7)))
