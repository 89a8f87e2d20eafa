"""The five channels of a kernel connection."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MESSAGE_CHANNELS", "Channel"]


class Channel(StrEnum):
    """A kernel channel; the value is the name used in connection files and WebSockets."""

    SHELL = "shell"
    IOPUB = "iopub"
    STDIN = "stdin"
    CONTROL = "control"
    HEARTBEAT = "hb"


#: Channels that carry Jupyter messages (the heartbeat carries raw pings).
MESSAGE_CHANNELS: frozenset[Channel] = frozenset(
    {Channel.SHELL, Channel.IOPUB, Channel.STDIN, Channel.CONTROL}
)
