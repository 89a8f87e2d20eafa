"""KernelRecord: what the state store keeps of one kernel, and its two halves on disk.

Pure data, no I/O. A record splits into a *public* half (everything but the
keys: id, kernel type, where it runs, cwd, env, times, reason, owner) and a
*secret* half (the HMAC key and the CurveZMQ pair), which a store keeps
where only the server's user can read it (SQLite: a 0600 file in a 0700
directory; a shared database: its protected column). Both halves are JSON
objects with a format version, so that a newer store can read an older one
and an unknown format is a clear StoreError, never a wrong kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kernelyard.errors import ConnectionInfoError, StoreError
from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["FORMAT", "SECRET_FIELDS", "KernelRecord"]

#: The version of both halves' layout; bump it when a field changes meaning.
FORMAT = 1
#: The connection-info fields that are secret: the secret half holds them.
SECRET_FIELDS = ("key", "curve_publickey", "curve_secretkey")


@dataclass(frozen=True, slots=True)
class KernelRecord:
    """One kernel the server manages, as it must be known to re-attach to it."""

    id: str
    kernel_type: str
    #: How to reach it again: the provisioner's AttachInfo (keys included).
    attach: AttachInfo
    cwd: str = ""
    #: The allowed variables the start was given (KERNEL_*, the allow-list's).
    env: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None
    last_activity: datetime | None = None
    #: Why it is in its state, when that needs saying ("culled", a death's cause).
    reason: str = ""
    #: The server that owns it now ("" when none does).
    owner: str = ""

    def with_(self, **changes: Any) -> KernelRecord:
        """A copy with ``changes`` (dataclasses.replace, checked by mypy at call sites)."""
        return replace(self, **changes)

    # -- the two halves ------------------------------------------------------------

    def public(self) -> dict[str, Any]:
        """Everything but the keys, as JSON data."""
        info = {
            k: v for k, v in self.attach.connection_info.to_dict().items() if k not in SECRET_FIELDS
        }
        return {
            "format": FORMAT,
            "id": self.id,
            "kernel_type": self.kernel_type,
            "provisioner": self.attach.provisioner,
            "location": dict(self.attach.location),
            "connection": info,
            "cwd": self.cwd,
            "env": dict(self.env),
            "created": _time(self.created),
            "last_activity": _time(self.last_activity),
            "reason": self.reason,
            "owner": self.owner,
        }

    def secret(self) -> dict[str, Any]:
        """The keys alone, as JSON data."""
        info = self.attach.connection_info.to_dict()
        return {"format": FORMAT, **{k: info[k] for k in SECRET_FIELDS if info.get(k)}}

    @classmethod
    def from_halves(cls, public: Mapping[str, Any], secret: Mapping[str, Any]) -> KernelRecord:
        """The record the two halves make; StoreError for anything this version cannot
        read (another format, a field missing or of the wrong kind).
        """
        for half, name in ((public, "record"), (secret, "keys")):
            if not isinstance(half, Mapping) or half.get("format") != FORMAT:
                found = half.get("format") if isinstance(half, Mapping) else type(half).__name__
                raise StoreError(
                    f"a kernel's {name} has format {found!r}; this kernelyard reads {FORMAT}"
                )
        try:
            kernel_id, kernel_type = _text(public, "id"), _text(public, "kernel_type")
            info = ConnectionInfo.from_dict(
                {**public["connection"], **{k: v for k, v in secret.items() if k != "format"}}
            )
            attach = AttachInfo(
                str(public["provisioner"]), kernel_id, info, dict(public["location"])
            )
            return cls(
                id=kernel_id,
                kernel_type=kernel_type,
                attach=attach,
                cwd=str(public.get("cwd", "")),
                env={str(k): str(v) for k, v in dict(public.get("env", {})).items()},
                created=_parse_time(public.get("created")),
                last_activity=_parse_time(public.get("last_activity")),
                reason=str(public.get("reason", "")),
                owner=str(public.get("owner", "")),
            )
        except (KeyError, TypeError, ValueError, ConnectionInfoError) as exc:
            raise StoreError(
                f"kernel {public.get('id', '?')!r}: its record cannot be read: {exc}"
            ) from exc


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {value!r}")
    return value


def _time(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _parse_time(text: object) -> datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"a time must be an ISO 8601 string, not {text!r}")
    return datetime.fromisoformat(text)
