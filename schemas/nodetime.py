"""The time a Hyperliquid node stamps on a block: UTC text at nanosecond precision, no zone.

Shared by the decoder (``blocks.time_ns``, every row's ``time_ms``) and the node-file import (an
imported command's ``ts_ms`` and microsecond stamps), so both read one block time the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=4096)
def _epoch_seconds(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def block_time_ns(text: str) -> int:
    """``2025-06-24T02:56:36.172847427`` (UTC, no zone) in nanoseconds since the epoch."""
    seconds, _, fraction = text.partition(".")
    if len(seconds) != 19 or (fraction and not fraction.isdigit()):
        raise ValueError(f"block time {text!r} is not YYYY-MM-DDTHH:MM:SS[.fraction]")
    time_ns = _epoch_seconds(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
    if not 0 <= time_ns < 1 << 63:
        raise ValueError(f"block time {text!r} is outside 1970-2262")
    return time_ns
