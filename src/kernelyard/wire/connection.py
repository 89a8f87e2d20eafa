"""Connection info: where a kernel's five sockets are and how messages are signed.

This is the model and its JSON form only; reading and writing connection files
(atomically, mode 0600) lives in :mod:`kernelyard.provisioning.connection_file`.

Port 0 means "not bound yet": a kernel given port 0 picks its own port and
reports it. For ``ipc`` the "ip" is a path prefix and each port a number that
makes the socket file ``{ip}-{port}``, as jupyter_client does it.
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

__all__ = ["PORT_FIELDS", "REGISTRATION_FIELD", "ConnectionInfo", "Transport"]

Transport = Literal["tcp", "ipc"]

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
_KNOWN = {*PORT_FIELDS.values(), "transport", "ip", "key", "signature_scheme", "kernel_name"}


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
    key: bytes = b""
    signature_scheme: str = DEFAULT_SIGNATURE_SCHEME
    kernel_name: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

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
        return cls(
            transport=data.get("transport", "tcp"),
            ip=data.get("ip", "127.0.0.1"),
            key=key,
            signature_scheme=data.get("signature_scheme", DEFAULT_SIGNATURE_SCHEME),
            kernel_name=data.get("kernel_name", ""),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
            **{name: data.get(name, 0) for name in PORT_FIELDS.values()},
        )

    @classmethod
    def from_json(cls, text: bytes | str) -> ConnectionInfo:
        try:
            data = loads_object(text, "connection info")
        except MalformedMessage as exc:
            raise ConnectionInfoError(str(exc)) from exc
        return cls.from_dict(data)
