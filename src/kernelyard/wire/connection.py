"""Connection info: where a kernel's five sockets are and how messages are signed.

This is the model and its JSON form only; reading and writing connection files
(atomically, mode 0600) lives in :mod:`kernelyard.provisioning.connection_file`.

Port 0 means "not bound yet": a kernel given port 0 picks its own port and
reports it. For ``ipc`` the "ip" is a path prefix and each port a number that
makes the socket file ``{ip}-{port}``, as jupyter_client does it.

``curve_publickey`` and ``curve_secretkey`` (CurveZMQ, as jupyter_client 8.10
writes them: Z85 text of 40 characters each, given together or not at all)
make the connection encrypted: the kernel's bound sockets are Curve servers
with this key pair, and clients use its public key as the server key. The
manager makes one pair per kernel and keeps it across restarts, like the HMAC
key; neither key shows in the repr.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kernelyard.errors import ConnectionInfoError, MalformedMessage
from kernelyard.wire.channel import Channel
from kernelyard.wire.jsonutil import dumps, loads_object
from kernelyard.wire.signing import DEFAULT_SIGNATURE_SCHEME, Signer, digest_name
from kernelyard.wire.z85 import check_curve_key

__all__ = ["PORT_FIELDS", "REGISTRATION_FIELD", "ConnectionInfo", "CurveKeys", "Transport"]

Transport = Literal["tcp", "ipc"]
#: A CurveZMQ key pair, (public, secret), each 40 characters of Z85 text.
CurveKeys = tuple[bytes, bytes]

#: Connection-file field of each channel's port.
PORT_FIELDS: dict[Channel, str] = {
    Channel.SHELL: "shell_port",
    Channel.IOPUB: "iopub_port",
    Channel.STDIN: "stdin_port",
    Channel.CONTROL: "control_port",
    Channel.HEARTBEAT: "hb_port",
}

#: The field naming the launcher's registration socket (JEP 66 handshake).
REGISTRATION_FIELD = "registration_port"
#: The CurveZMQ key pair's fields, in the order they are checked.
_CURVE_FIELDS = ("curve_publickey", "curve_secretkey")
_KNOWN = {
    *PORT_FIELDS.values(),
    *_CURVE_FIELDS,
    "transport",
    "ip",
    "key",
    "signature_scheme",
    "kernel_name",
}


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A validated connection file. Unknown fields are kept in ``extra`` and written back."""

    transport: Transport = "tcp"
    ip: str = "127.0.0.1"
    shell_port: int = 0
    iopub_port: int = 0
    stdin_port: int = 0
    control_port: int = 0
    hb_port: int = 0
    key: bytes = field(default=b"", repr=False)
    signature_scheme: str = DEFAULT_SIGNATURE_SCHEME
    kernel_name: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The kernel's CurveZMQ key pair (Z85); empty when the connection is not encrypted.
    curve_publickey: bytes = field(default=b"", repr=False)
    curve_secretkey: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "ipc"):
            raise ConnectionInfoError(f"transport must be 'tcp' or 'ipc', not {self.transport!r}")
        if not isinstance(self.ip, str) or not self.ip:
            raise ConnectionInfoError("ip must be a non-empty string")
        if not isinstance(self.key, bytes):
            raise ConnectionInfoError("key must be bytes")
        for name in PORT_FIELDS.values():
            port = getattr(self, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConnectionInfoError(
                    f"{name} must be an integer from 0 to 65535, not {port!r}"
                )
        bound = [p for p in self.ports.values() if p]
        if len(bound) != len(set(bound)):
            raise ConnectionInfoError(f"two channels share a port: {sorted(bound)}")
        digest_name(self.signature_scheme)
        for name in _CURVE_FIELDS:
            value = getattr(self, name)
            if value:
                check_curve_key(name, value)
        if bool(self.curve_publickey) != bool(self.curve_secretkey):
            given, missing = _CURVE_FIELDS if self.curve_publickey else _CURVE_FIELDS[::-1]
            raise ConnectionInfoError(
                f"{given} is given without {missing}: an encrypted connection needs both"
            )

    @property
    def encrypted(self) -> bool:
        """True when the connection uses CurveZMQ (the key pair is given)."""
        return bool(self.curve_secretkey)

    @property
    def curve_keys(self) -> CurveKeys | None:
        """The (public, secret) Curve key pair, or None when not encrypted."""
        return (self.curve_publickey, self.curve_secretkey) if self.curve_secretkey else None

    @property
    def ports(self) -> dict[Channel, int]:
        return {channel: getattr(self, name) for channel, name in PORT_FIELDS.items()}

    @property
    def all_ports_bound(self) -> bool:
        return all(self.ports.values())

    def endpoint(self, channel: Channel) -> str:
        """The ZeroMQ endpoint of ``channel`` (``tcp://ip:port`` or ``ipc://ip-port``)."""
        port = self.ports[channel]
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"tcp://{host}:{port}"

    def ipc_paths(self) -> list[str]:
        """The socket files of an ipc connection (``{ip}-{port}``); none for tcp."""
        if self.transport != "ipc":
            return []
        return [f"{self.ip}-{port}" for port in self.ports.values() if port]

    def signer(self) -> Signer:
        return Signer(self.key, self.signature_scheme)

    def with_ports(self, ports: Mapping[Channel, int]) -> ConnectionInfo:
        """A copy with the given channels' ports replaced."""
        changes: dict[str, Any] = {PORT_FIELDS[c]: p for c, p in ports.items()}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The connection-file dict (key as text), extra fields included."""
        data: dict[str, Any] = dict(self.extra)
        data.update(
            {
                "transport": self.transport,
                "ip": self.ip,
                **{name: getattr(self, name) for name in PORT_FIELDS.values()},
                "key": self.key.decode("utf-8"),
                "signature_scheme": self.signature_scheme,
                "kernel_name": self.kernel_name,
            }
        )
        if self.encrypted:
            data["curve_publickey"] = self.curve_publickey.decode("ascii")
            data["curve_secretkey"] = self.curve_secretkey.decode("ascii")
        return data

    def to_json(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectionInfo:
        """Validate a connection-file dict; anything unusable raises ConnectionInfoError.

        Missing ports are 0 (unbound), a missing key is ``b""`` (unsigned).
        """
        if not isinstance(data, Mapping):
            raise ConnectionInfoError("connection info must be a JSON object")
        key = data.get("key", "")
        if isinstance(key, str):
            key = key.encode("utf-8")
        elif not isinstance(key, bytes):
            raise ConnectionInfoError(f"key must be a string, not {type(key).__name__}")
        for name in ("transport", "ip", "signature_scheme", "kernel_name"):
            if name in data and not isinstance(data[name], str):
                raise ConnectionInfoError(f"{name} must be a string, not {data[name]!r}")
        public, secret = (_key_field(data, name) for name in _CURVE_FIELDS)
        return cls(
            transport=data.get("transport", "tcp"),
            ip=data.get("ip", "127.0.0.1"),
            key=key,
            signature_scheme=data.get("signature_scheme", DEFAULT_SIGNATURE_SCHEME),
            kernel_name=data.get("kernel_name", ""),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
            curve_publickey=public,
            curve_secretkey=secret,
            **{name: data.get(name, 0) for name in PORT_FIELDS.values()},
        )

    @classmethod
    def from_json(cls, text: bytes | str) -> ConnectionInfo:
        try:
            data = loads_object(text, "connection info")
        except MalformedMessage as exc:
            raise ConnectionInfoError(str(exc)) from exc
        return cls.from_dict(data)


def _key_field(data: Mapping[str, Any], name: str) -> bytes:
    """A Curve key field as bytes (b"" when missing or null); a non-string is an error."""
    value = data.get(name)
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise ConnectionInfoError(f"{name} must be a string, not {type(value).__name__}")
