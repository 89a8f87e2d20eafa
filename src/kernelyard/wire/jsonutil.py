"""JSON for the wire: orjson, with Jupyter's date format.

Every datetime we write is ISO 8601 in UTC with microseconds and a trailing
``Z`` (``2026-11-22T10:00:00.000000Z``). Naive datetimes are taken as local
time, as jupyter_client does. Dates we read stay strings: only the header's
``date`` is ever parsed, on demand (:func:`parse_date`).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

from kernelyard.errors import LocalProtocolError, MalformedMessage

__all__ = ["dumps", "dumps_fast", "format_date", "loads", "loads_object", "parse_date"]

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME
# Non-string keys cost every call ~40 % more when allowed up front, so they are
# allowed only on a second try, for the rare dict that has them.
_RETRY_OPTIONS = _OPTIONS | orjson.OPT_NON_STR_KEYS


def format_date(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``; naive values are local time."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # orjson formats a datetime several times faster than isoformat or
    # strftime (every message header pays this); it omits a zero fraction.
    text = orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:-1].decode("ascii")
    return text if value.microsecond else text[:-1] + ".000000Z"


def parse_date(text: str) -> datetime:
    """Parse an ISO 8601 date as peers write it (``Z`` or an offset; naive means UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"not an ISO 8601 date: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _default(value: object) -> object:
    # orjson hands us what it cannot encode natively; datetimes come here too
    # (OPT_PASSTHROUGH_DATETIME) so that they always carry microseconds.
    if isinstance(value, datetime):
        return format_date(value)
    if isinstance(value, bytes | bytearray | memoryview):
        # jupyter_client sends bytes in JSON as base64 text; so do we.
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_fast(value: object) -> bytes:
    """:func:`dumps` for the common case, raising TypeError where :func:`dumps` would retry.

    For hot loops that call it several times under one ``try`` and fall back
    to :func:`dumps` (see the codec).
    """
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def dumps(value: object) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON; unencodable values raise LocalProtocolError.

    Non-string dict keys are written as strings, as ``json.dumps`` does.
    """
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError subclasses TypeError
        pass
    try:
        return orjson.dumps(value, default=_default, option=_RETRY_OPTIONS)
    except TypeError as exc:
        raise LocalProtocolError(f"cannot encode as JSON: {exc}") from exc


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON; anything that is not valid JSON raises MalformedMessage."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"invalid JSON: {exc}") from exc


def loads_object(data: bytes | bytearray | memoryview | str, what: str) -> dict[str, Any]:
    """Decode a JSON object; any other JSON value raises MalformedMessage naming ``what``."""
    value = loads(data)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{what} is not a JSON object")
    return value
