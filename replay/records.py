"""What a replay yields: archived commands, and the gaps between them, in seq order."""

from __future__ import annotations

from typing import NamedTuple


class ReplayRecord(NamedTuple):
    """One archived command, as the feed delivered it and the recorder received it.

    ``scheduled_s`` is when the replay was due to emit it, in seconds after the replay's first
    command (``Replay.started_at`` on the monotonic clock); None at speed max, which never waits.
    """

    seq: int
    ts_ms: int
    ingest_ts_us: int
    publish_ts_us: int
    recv_ts_us: int
    raw: bytes
    scheduled_s: float | None


class ReplayGap(NamedTuple):
    """Seqs ``from_seq``..``to_seq`` (inclusive) are missing from the archive inside the range.

    ``cause`` comes from the archive's gap records (``jump``, ``reconnect``, ``restart``, joined
    by ``+`` when several cover it); None when no record covers it.
    """

    from_seq: int
    to_seq: int
    missing: int
    cause: str | None
