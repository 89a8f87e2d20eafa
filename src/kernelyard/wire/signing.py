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

from kernelyard.errors import ConnectionInfoError, InvalidSignature, ReplayedMessage

__all__ = ["DEFAULT_SIGNATURE_SCHEME", "ReplayGuard", "Signer", "digest_name"]

DEFAULT_SIGNATURE_SCHEME = "hmac-sha256"

Frame = bytes | bytearray | memoryview


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


class Signer:
    """Signs and verifies the four JSON frames of a message with one key.

    ``Signer(b"")`` is the unsigned mode: :meth:`sign` returns ``b""`` and
    :meth:`verify` accepts anything.
    """

    __slots__ = ("_prototype", "key", "scheme")

    def __init__(self, key: bytes, scheme: str = DEFAULT_SIGNATURE_SCHEME) -> None:
        self.key = key
        self.scheme = scheme
        # Copying a keyed prototype skips re-deriving the padded key each time.
        self._prototype = hmac.new(key, digestmod=digest_name(scheme)) if key else None

    @property
    def enabled(self) -> bool:
        return self._prototype is not None

    def sign(self, parts: Iterable[Frame]) -> bytes:
        """The signature of ``parts`` (header, parent, metadata, content), or ``b""``."""
        if self._prototype is None:
            return b""
        mac = self._prototype.copy()
        mac.update(b"".join(parts))  # one update: cheaper than four for small frames
        return mac.hexdigest().encode("ascii")

    def verify(self, parts: Iterable[Frame], signature: Frame) -> None:
        """Raise InvalidSignature unless ``signature`` is right for ``parts``."""
        if self._prototype is None:
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
