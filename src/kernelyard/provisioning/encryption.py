"""Whether a new kernel's connection is encrypted: jupyter_client 8.10's rule, as data.

``transport_encryption`` is ``disabled`` (no keys), ``auto`` (keys when the
kernelspec declares ``"curve"`` in ``metadata.supported_encryption``) or
``required`` (keys, and a kernelspec that does not declare it fails to start,
with a :class:`~kernelyard.errors.LaunchError` naming it). The manager makes
the key pair, once per kernel: a restart relaunches with the connection info
it already has, keys included, as it does with the HMAC key.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

from kernelyard.errors import LaunchError
from kernelyard.provisioning.spec import LaunchSpec
from kernelyard.transport.curve import new_keypair, require_curve
from kernelyard.wire.connection import CurveKeys

__all__ = [
    "ENCRYPTION_MODES",
    "TransportEncryption",
    "curve_keys_for",
    "encryption_mode",
    "stricter",
]

TransportEncryption = Literal["disabled", "auto", "required"]
ENCRYPTION_MODES: tuple[TransportEncryption, ...] = get_args(TransportEncryption)


def encryption_mode(value: str) -> TransportEncryption:
    """``value`` as a mode, in any case (as jupyter_client's CaselessStrEnum takes it).

    ValueError for anything but ENCRYPTION_MODES; EncryptionUnavailable for ``auto``
    or ``required`` where libzmq has no Curve (jupyter_client refuses them too).
    """
    mode = value.strip().lower() if isinstance(value, str) else value
    if not _is_mode(mode):
        raise ValueError(
            f"transport_encryption must be one of {', '.join(ENCRYPTION_MODES)}, not {value!r}"
        )
    if mode != "disabled":
        require_curve(f"transport_encryption={mode!r}")
    return mode


def _is_mode(value: object) -> TypeGuard[TransportEncryption]:
    return value in ENCRYPTION_MODES


def stricter(first: TransportEncryption, second: TransportEncryption) -> TransportEncryption:
    """The stricter of two modes (``disabled`` < ``auto`` < ``required``)."""
    return max(first, second, key=ENCRYPTION_MODES.index)


def curve_keys_for(spec: LaunchSpec, mode: TransportEncryption) -> CurveKeys | None:
    """A fresh key pair for a new kernel of ``spec`` under ``mode``, or None (clear text)."""
    if mode == "disabled":
        return None
    if not spec.supports_curve:
        if mode == "auto":
            return None
        raise LaunchError(
            f"transport_encryption='required', but kernelspec {spec.kernel_name!r} does not "
            "declare 'curve' in metadata.supported_encryption",
            argv=list(spec.argv),
        )
    return new_keypair()
