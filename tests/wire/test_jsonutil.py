from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernelyard.errors import LocalProtocolError, MalformedMessage
from kernelyard.wire.jsonutil import dumps, format_date, loads, loads_object, parse_date


def test_dates_always_have_microseconds_and_z() -> None:
    assert format_date(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_date(datetime(2026, 1, 2, 5, 4, 5, 7, tzinfo=plus_two)) == (
        "2026-01-02T03:04:05.000007Z"
    )


def test_naive_dates_are_local_time() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5, 6)
    assert format_date(naive) == format_date(naive.astimezone(UTC))


def test_dumps_formats_nested_datetimes_and_bytes() -> None:
    value = {"started": datetime(2026, 1, 1, tzinfo=UTC), "raw": b"\x00\x01", 3: "int key"}
    assert loads(dumps(value)) == {
        "started": "2026-01-01T00:00:00.000000Z",
        "raw": "AAE=",
        "3": "int key",
    }


def test_dumps_rejects_unencodable_values() -> None:
    with pytest.raises(LocalProtocolError, match="not JSON serializable"):
        dumps({"x": object()})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05.000006Z", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_date_accepts_what_peers_write(text: str, expected: datetime) -> None:
    assert parse_date(text) == expected


def test_parse_date_rejects_garbage() -> None:
    with pytest.raises(MalformedMessage, match="ISO 8601"):
        parse_date("yesterday")


def test_loads_errors_are_malformed_message() -> None:
    with pytest.raises(MalformedMessage, match="invalid JSON"):
        loads(b"{nope")
    with pytest.raises(MalformedMessage, match="content is not a JSON object"):
        loads_object(b"[1]", "content")


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.timezones() | st.just(UTC),
    )
)
def test_format_date_matches_isoformat_for_any_datetime(value: datetime) -> None:
    expected = value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert format_date(value) == expected
