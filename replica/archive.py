"""The Python API for backtests: open an archive, replay a range of it.

    archive = replica.open("archive")
    for item in archive.replay(from_seq=482_910_000, speed=10):
        if isinstance(item, replica.ReplayGap):
            ...  # seqs item.from_seq..item.to_seq are missing
        else:
            ...  # a ReplayRecord: seq, ts_ms, ingest_ts_us, publish_ts_us, recv_ts_us, raw

``async for`` works on the same object and does not block the event loop while it reads.
``decode=True`` yields ``DecodedCommand``s instead of records: the record and its rows by
table, as ``replica decode`` would write them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

from replica.decoder.core import Decoder
from replica.replay.follow import Follow
from replica.replay.records import ReplayRecord
from replica.replay.selection import Selection, utc_ms
from replica.replay.stream import Replay
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import UsageError


class DecodedCommand(NamedTuple):
    """A replayed command decoded: its record, and its rows by table (``orders``, ``fills``,
    ``undecoded``, ...), each row a dict of the decoded table's columns."""

    record: ReplayRecord
    rows: dict[str, list[dict[str, Any]]]

    @property
    def seq(self) -> int:
        return self.record.seq


def _decoding(decoder: Decoder) -> Callable[[ReplayRecord], DecodedCommand]:
    def decoded(record: ReplayRecord) -> DecodedCommand:
        return DecodedCommand(record, decoder.decode_one(record.seq, record.ts_ms, record.raw))

    return decoded


def open(path: str | os.PathLike[str], endpoint_url: str | None = None) -> Archive:
    """An archive written by ``replica record`` or ``import-node``; raises ``NotAnArchive`` (an
    ``ArchiveError``) if ``path`` is not one. ``path`` may be ``s3://bucket/prefix``, read from
    the store at ``endpoint_url`` (else ``$AWS_ENDPOINT_URL``, else AWS S3) with the AWS
    credential chain; such an archive replays, but does not follow."""
    return Archive(ArchiveLayout.open(path, endpoint_url))


class Archive:
    def __init__(self, layout: ArchiveLayout) -> None:
        self.layout = layout

    @property
    def root(self) -> Path:
        return self.layout.root

    @overload
    def replay(
        self,
        *,
        from_seq: int | None = None,
        to_seq: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        speed: float | None = None,
        clock: str = "ts_ms",
        precise: bool = False,
        fail_on_gap: bool = False,
        decode: bool = False,
        follow: Literal[False] = False,
    ) -> Replay: ...

    @overload
    def replay(
        self,
        *,
        from_seq: int | None = None,
        to_seq: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        speed: float | None = None,
        clock: str = "ts_ms",
        precise: bool = False,
        fail_on_gap: bool = False,
        decode: bool = False,
        follow: Literal[True],
    ) -> Follow: ...

    def replay(
        self,
        *,
        from_seq: int | None = None,
        to_seq: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        speed: float | None = None,
        clock: str = "ts_ms",
        precise: bool = False,
        fail_on_gap: bool = False,
        decode: bool = False,
        follow: bool = False,
    ) -> Replay | Follow:
        """The archived commands with seqs from_seq..to_seq (inclusive) and ts_ms in
        [start, end) (aware datetimes), in seq order, as ``ReplayRecord``s with a ``ReplayGap``
        before the first command after each gap inside the range.

        ``speed=None`` replays as fast as possible; a number re-creates the original spacing
        of ``clock`` (``ts_ms``, ``ingest_ts_us``, ``publish_ts_us`` or ``recv_ts_us``)
        divided by it. ``precise`` spins before each command for sub-millisecond timing, at
        the cost of a core. ``fail_on_gap`` raises ``GapInRange`` where the gap would be.
        ``decode`` yields ``DecodedCommand``s, decoded by the same decoder as ``replica
        decode`` (about 80 us a command of the bundled feed; at paced speeds before the wait).
        ``follow`` goes on past the archive's last command with each one a recorder archives
        later, until the loop stops (see ``replay.follow``): it takes only ``from_seq``.
        Bad arguments raise ``UsageError`` here, before anything is read.
        """
        selection = Selection(
            from_seq=from_seq,
            to_seq=to_seq,
            start_ms=None if start is None else utc_ms("start", start),
            end_ms=None if end is None else utc_ms("end", end),
        )
        if follow:
            asked = {"to_seq": to_seq, "start": start, "end": end, "speed": speed}
            named = [name for name, value in asked.items() if value is not None]
            if named or precise or fail_on_gap or decode or clock != "ts_ms":
                raise UsageError(
                    "follow replays from from_seq as the archive grows; it takes no "
                    + ", ".join(named or ["precise, fail_on_gap, decode or clock"])
                )
            return Follow(self.layout, from_seq=selection.from_seq)
        return Replay(
            self.layout,
            selection,
            speed=speed,
            clock=clock,
            precise=precise,
            fail_on_gap=fail_on_gap,
            transform=_decoding(Decoder()) if decode else None,
        )
