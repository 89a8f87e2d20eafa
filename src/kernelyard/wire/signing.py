"""HMAC signing of message frames, and the replay guard.

The signature covers the header, parent header, metadata and content frames
(not the buffers: the protocol leaves them out). It is the lowercase hex digest,
sent as ASCII bytes. An empty key means messages are not signed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Iterable
from typing import Any

from kernelyard.errors import ConnectionInfoError, InvalidSignature, ReplayedMessage
from kernelyard.wire.frame import Frame

__all__ = ["DEFAULT_SIGNATURE_SCHEME", "ReplayGuard", "Signer", "digest_name"]

DEFAULT_SIGNATURE_SCHEME = "hmac-sha256"


def digest_name(scheme: str) -> str:
    """The hashlib name in ``"hmac-<name>"``; unknown schemes raise ConnectionInfoError."""
    prefix, sep, name = scheme.partition("-")
    if prefix != "hmac" or not sep or not name:
        raise ConnectionInfoError(f"signature_scheme must look like 'hmac-sha256', not {scheme!r}")
    if name not in hashlib.algorithms_available:
        raise ConnectionInfoError(f"signature_scheme {scheme!r}: hashlib has no {name!r}")
    try:
        hmac.new(b"k", digestmod=name)
    except (TypeError, ValueError) as exc:  # e.g. shake_*: no fixed digest size
        raise ConnectionInfoError(f"signature_scheme {scheme!r} cannot be used for HMAC") from exc
    return name


_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))


class Signer:
    """Signs and verifies the four JSON frames of a message with one key.

    ``Signer(b"")`` is the unsigned mode: :meth:`sign` returns ``b""`` and
    :meth:`verify` accepts anything.

    The HMAC (RFC 2104) is computed from two keyed hashlib states made once:
    copying a hashlib object is a C call, while ``hmac.HMAC.copy`` goes
    through Python and costs the codec a third of an encode. Tests check it
    against :func:`hmac.new` for every scheme and key length.
    """

    __slots__ = ("_inner", "_outer", "key", "scheme")

    def __init__(self, key: bytes, scheme: str = DEFAULT_SIGNATURE_SCHEME) -> None:
        self.key = key
        self.scheme = scheme
        name = digest_name(scheme)
        self._inner: Any = None
        self._outer: Any = None
        if key:
            block = hashlib.new(name).block_size
            padded = (hashlib.new(name, key).digest() if len(key) > block else key).ljust(
                block, b"\0"
            )
            self._inner = hashlib.new(name, padded.translate(_TRANS_36))
            self._outer = hashlib.new(name, padded.translate(_TRANS_5C))

    @property
    def enabled(self) -> bool:
        return self._inner is not None

    def sign(self, parts: Iterable[Frame]) -> bytes:
        """The signature of ``parts`` (header, parent, metadata, content), or ``b""``."""
        if self._inner is None:
            return b""
        inner = self._inner.copy()
        inner.update(b"".join(parts))  # one update: cheaper than four for small frames
        outer = self._outer.copy()
        outer.update(inner.digest())
        signature: str = outer.hexdigest()
        return signature.encode("ascii")

    def verify(self, parts: Iterable[Frame], signature: Frame) -> None:
        """Raise InvalidSignature unless ``signature`` is right for ``parts``."""
        if self._inner is None:
            return
        if not signature:
            raise InvalidSignature("message is not signed")
        if not hmac.compare_digest(self.sign(parts), bytes(signature)):
            raise InvalidSignature("message signature does not match")


class ReplayGuard:
    """Remembers the last ``capacity`` accepted signatures and rejects repeats.

    One guard belongs to one receiving endpoint and one key: give it a signature
    only after the signature verified (so forged frames cannot evict real
    entries), and keep it across reconnects and in-place restarts, which reuse
    the key. Eviction is first in, first out.
    """

    __slots__ = ("_order", "_seen", "capacity")

    def __init__(self, capacity: int = 1 << 16) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, signature: object) -> bool:
        return signature in self._seen

    def record(self, signature: bytes) -> None:
        """Accept ``signature`` once; raise ReplayedMessage if it was accepted before."""
        if not signature:
            return  # unsigned mode: nothing to remember
        if signature in self._seen:
            raise ReplayedMessage("message signature was already used (replayed message)")
        self._seen.add(signature)
        self._order.append(signature)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
