"""Hypothesis strategies for messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from kernelyard.wire import Channel, Message, new_header
from kernelyard.wire.channel import MESSAGE_CHANNELS

#: A reading of the clock with non-zero microseconds.
FIXED_NOW = datetime(2026, 11, 22, 10, 30, 15, 123456, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(), json_values, max_size=5
)
names = st.text(min_size=1, max_size=30)
buffers = st.lists(st.binary(max_size=64), max_size=3)
message_channels = st.sampled_from(sorted(MESSAGE_CHANNELS))


@st.composite
def messages(draw: st.DrawFn, *, with_channel: bool = False) -> Message:
    header = new_header(
        draw(names),
        msg_id=draw(names),
        session=draw(names),
        now=FIXED_NOW,
        username=draw(names),
        subshell_id=draw(st.none() | names),
    )
    parent = draw(st.just({}) | st.builds(dict, msg_id=names, msg_type=names))
    channel: Channel | None = draw(message_channels) if with_channel else None
    return Message(
        header=header,
        parent_header=parent,
        metadata=draw(json_objects),
        content=draw(json_objects),
        buffers=tuple(draw(buffers)),
        channel=channel,
    )
