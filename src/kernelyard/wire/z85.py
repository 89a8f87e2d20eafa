"""Z85 (ZeroMQ RFC 32), as CurveZMQ keys are written: a check of the text form only.

85 printable characters, five for every four bytes, each group of five a
base-85 number that must fit in 32 bits. A Curve key is 32 bytes, so 40
characters; that is what ``zmq.curve_keypair()`` makes and jupyter_client
writes to connection files.
"""

from __future__ import annotations

from kernelyard.errors import ConnectionInfoError

__all__ = ["CURVE_KEY_LENGTH", "check_curve_key"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_VALUE = {ord(c): i for i, c in enumerate(_ALPHABET)}
#: Characters of a 32-byte key in Z85.
CURVE_KEY_LENGTH = 40


def check_curve_key(name: str, value: bytes) -> None:
    """Raise ConnectionInfoError naming ``name`` unless ``value`` is a Z85 Curve key.

    The message never quotes the value, not even one character of it: it may be
    a secret key.
    """
    if len(value) != CURVE_KEY_LENGTH:
        raise ConnectionInfoError(
            f"{name} must be {CURVE_KEY_LENGTH} characters of Z85 text "
            f"(a 32-byte CurveZMQ key), not {len(value)}"
        )
    for start in range(0, CURVE_KEY_LENGTH, 5):
        number = 0
        for position, byte in enumerate(value[start : start + 5], start=start):
            digit = _VALUE.get(byte)
            if digit is None:
                raise ConnectionInfoError(
                    f"{name} has a character outside the Z85 alphabet at position {position}"
                )
            number = number * 85 + digit
        if number > 0xFFFFFFFF:
            raise ConnectionInfoError(f"{name} is not valid Z85 (a group exceeds 32 bits)")
