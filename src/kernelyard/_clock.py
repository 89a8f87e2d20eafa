"""The one wall clock kernelyard reads (message dates, activity times): UTC, aware.

Sans-I/O code (``wire/``) never reads it; it takes a clock as an argument.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utcnow"]


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)
