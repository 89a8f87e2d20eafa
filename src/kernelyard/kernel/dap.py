"""The Debug Adapter Protocol's framing, and the names cells get for the debugger (pure).

DAP messages are JSON objects, each preceded by a header block::

    Content-Length: 119\\r\\n
    \\r\\n
    {"seq": 1, "type": "request", "command": "initialize", ...}

:func:`encode_dap` frames one message; a :class:`DapDecoder` takes the bytes
of a stream in chunks of any size and returns the whole messages they
complete.

JupyterLab sets a breakpoint in a cell by the path of a file that holds the
cell's code: ``tmpFilePrefix + str(murmur2(code, hashSeed)) + tmpFileSuffix``,
with the three values the kernel reports in ``debugInfo``. :class:`CellNames`
computes that path; the kernel compiles every cell under it, so a breakpoint
set on the file stops in the cell (also in a function the cell defined).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from kernelyard.errors import MalformedMessage
from kernelyard.wire.jsonutil import dumps, loads_object

__all__ = ["HASH_SEED", "CellNames", "DapDecoder", "encode_dap", "murmur2"]

#: Any seed works (JupyterLab reads it from debugInfo); ipykernel's, so paths look alike.
HASH_SEED = 0xC005E3

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")
_SEPARATOR = b"\r\n\r\n"
#: A header block longer than this is not DAP (the one field we know is short).
_MAX_HEADER = 1024
#: A body announced larger than this is refused rather than waited for.
_MAX_BODY = 1 << 28


def murmur2(data: bytes, seed: int) -> int:
    """MurmurHash2, 32 bits, little-endian words: JupyterLab's ``murmur2`` (``hash.ts``)."""
    length = len(data)
    h = (seed ^ length) & _MASK
    whole = length - length % 4
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length - whole
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


class CellNames:
    """Where the debugger finds each cell: ``{prefix}{murmur2(code, seed)}{suffix}``."""

    def __init__(self, directory: str, *, seed: int = HASH_SEED) -> None:
        self.directory = directory
        self.seed = seed
        self.prefix = directory + os.sep
        self.suffix = ".py"
        # Cells run again and again (a loop of round trips, a re-run notebook):
        # hashing is pure Python, so the names of recent cells are remembered.
        self.path_for = lru_cache(maxsize=256)(self._path_for)

    def _path_for(self, code: str) -> str:
        digest = murmur2(code.encode("utf-8", "surrogatepass"), self.seed)
        return f"{self.prefix}{digest}{self.suffix}"


def encode_dap(message: Mapping[str, Any]) -> bytes:
    """One DAP message, framed (LocalProtocolError if it cannot be JSON)."""
    body = dumps(message)
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class DapDecoder:
    """The bytes of a DAP stream in, in chunks of any size; whole messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The messages ``data`` completes, in order.

        Raises MalformedMessage for a header without a valid Content-Length, a
        header block that never ends, or a body that is not a JSON object; the
        stream cannot be trusted after that.
        """
        self._buffer += data
        messages: list[dict[str, Any]] = []
        while True:
            end = self._buffer.find(_SEPARATOR)
            if end < 0:
                if len(self._buffer) > _MAX_HEADER:
                    raise MalformedMessage("a DAP header block without an end")
                return messages
            length = _content_length(bytes(self._buffer[:end]))
            start = end + len(_SEPARATOR)
            if len(self._buffer) - start < length:
                return messages
            body = bytes(self._buffer[start : start + length])
            del self._buffer[: start + length]
            messages.append(loads_object(body, "DAP message"))


def _content_length(header: bytes) -> int:
    for line in header.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            text = value.strip()
            if text.isdigit() and int(text) <= _MAX_BODY:
                return int(text)
            raise MalformedMessage(f"bad DAP Content-Length: {text[:40]!r}")
    raise MalformedMessage(f"a DAP header without Content-Length: {header[:80]!r}")
