from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelyard.errors import ConnectionInfoError, InvalidSignature, ReplayedMessage
from kernelyard.wire.signing import ReplayGuard, Signer, digest_name

PARTS = [b'{"msg_id":"a"}', b"{}", b"{}", b'{"x":1}']


def test_signature_is_hex_hmac_of_the_four_parts() -> None:
    expected = hmac.new(b"key", b"".join(PARTS), hashlib.sha256).hexdigest().encode()
    assert Signer(b"key").sign(PARTS) == expected


@pytest.mark.parametrize("scheme", ["hmac-sha256", "hmac-sha512", "hmac-md5", "hmac-sha3_256"])
def test_other_hashlib_schemes_sign_and_verify(scheme: str) -> None:
    signer = Signer(b"key", scheme)
    name = scheme.removeprefix("hmac-")
    assert signer.sign(PARTS) == hmac.new(b"key", b"".join(PARTS), name).hexdigest().encode()
    signer.verify(PARTS, signer.sign(PARTS))


@pytest.mark.parametrize(
    "scheme", ["sha256", "hmac-", "hmac-nosuchhash", "rsa-sha256", "hmac-shake_128"]
)
def test_unusable_schemes_are_rejected(scheme: str) -> None:
    with pytest.raises(ConnectionInfoError, match="signature_scheme"):
        digest_name(scheme)


def test_verify_rejects_wrong_and_missing_signatures() -> None:
    signer = Signer(b"key")
    with pytest.raises(InvalidSignature, match="does not match"):
        signer.verify(PARTS, Signer(b"other").sign(PARTS))
    with pytest.raises(InvalidSignature, match="not signed"):
        signer.verify(PARTS, b"")


def test_empty_key_means_unsigned() -> None:
    signer = Signer(b"")
    assert not signer.enabled
    assert signer.sign(PARTS) == b""
    signer.verify(PARTS, b"anything at all")


def test_replay_guard_rejects_a_repeat_and_forgets_oldest_first() -> None:
    guard = ReplayGuard(capacity=2)
    guard.record(b"a")
    with pytest.raises(ReplayedMessage):
        guard.record(b"a")
    guard.record(b"b")
    guard.record(b"c")  # evicts "a", the oldest
    assert len(guard) == 2
    assert b"a" not in guard
    guard.record(b"a")
    with pytest.raises(ReplayedMessage):
        guard.record(b"c")


def test_replay_guard_ignores_unsigned_messages() -> None:
    guard = ReplayGuard()
    guard.record(b"")
    guard.record(b"")
    assert len(guard) == 0


def test_replay_guard_needs_room() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayGuard(capacity=0)


@given(
    st.binary(min_size=1, max_size=300),
    st.sampled_from(["hmac-sha256", "hmac-sha512", "hmac-sha1", "hmac-sha3_512", "hmac-blake2b"]),
    st.lists(st.binary(max_size=100), min_size=4, max_size=4),
)
def test_signatures_equal_the_standard_library_hmac(
    key: bytes, scheme: str, parts: list[bytes]
) -> None:
    name = scheme.removeprefix("hmac-")
    expected = hmac.new(key, b"".join(parts), name).hexdigest().encode()
    assert Signer(key, scheme).sign(parts) == expected
