"""Following an archive another process is recording: its commands, then each new one as the
recorder seals it, until the consumer stops.

The archive is polled every ``POLL_S`` seconds (portable, and cheap: a directory listing) rather
than watched with inotify. Each poll reads the recorder's spool (``ARCHIVE/spool/*.wal``, the
commands received but not yet sealed, read on from where the last poll stopped), then the sealed
segments after the last seq yielded, and yields the segments' commands, then the spooled ones
not among them.

The seams rule: a follower remembers the last seq it yielded and yields only seqs after it, so
a command is yielded once, in seq order, whether it was archived before the follow began or
while it ran, still spooled or sealed, and whether its segment was compacted meanwhile. The
spool is read before the segments are listed, so a command that moves from the spool to a
segment under a poll is found in one or both, never in neither (the recorder deletes a spool
only after its segment is published, and seals units in seq order). Missing seqs show as a
``ReplayGap`` before the first command after them (cause None: the recorder writes its gap
records with the segment).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pyarrow as pa
from replica.replay.reader import SkippedSpan, read_selected
from replica.replay.records import ReplayGap, ReplayRecord
from replica.replay.resumable import Resumable
from replica.replay.selection import Selection
from replica.schemas.archive import RAW_SCHEMA, ArchiveLayout
from replica.schemas.seqranges import span
from replica.schemas.spool import SpooledCommand, SpoolTail
from replica.schemas.storepath import StorePath

POLL_S = 0.2  # between looks for new segments once the follower has caught up
# On an object store a look is a LIST request, billed and slower, and what it can find (an
# uploaded segment) comes at the recorder's seal cadence, not by the command.
STORE_POLL_S = 2.0
_BATCH_ROWS = 8192


def live_edge(layout: ArchiveLayout) -> int | None:
    """The last seq archived now, sealed or spooled, or None in an archive with neither."""
    segments = layout.segments()
    spool = _spool_of(layout)
    seqs = [seq for seq, *_ in spool.new_commands()] if spool is not None else []
    if segments:
        seqs.append(segments[-1].last_seq)
    return max(seqs, default=None)


class Follow:
    """Commands with seqs from ``from_seq`` (from the archive's first when None), archived or
    yet to be, as ``ReplayRecord``s (``scheduled_s`` None) with ``ReplayGap``s at seq jumps;
    ``after_seq`` instead starts after that seq (the live edge, for a live-only follower).
    Iterate with ``for`` or ``async for``; each iteration starts afresh."""

    def __init__(
        self,
        layout: ArchiveLayout,
        *,
        from_seq: int | None = None,
        after_seq: int | None = None,
        poll_s: float | None = None,
    ) -> None:
        self.layout = layout
        self._after = after_seq if from_seq is None else from_seq - 1
        on_store = isinstance(layout.root, StorePath)
        self._poll_s = poll_s if poll_s is not None else STORE_POLL_S if on_store else POLL_S

    def __iter__(self) -> Iterator[ReplayRecord | ReplayGap]:
        position = Position(self.layout, self._after)
        while True:
            found = False
            for batch in position.batches():
                found = True
                yield from position.items(batch)
            if not found:
                time.sleep(self._poll_s)

    async def __aiter__(self) -> AsyncIterator[ReplayRecord | ReplayGap]:
        loop = asyncio.get_running_loop()
        position = Position(self.layout, self._after)
        while True:
            batches = position.batches()
            found = False
            while (batch := await loop.run_in_executor(None, next, batches, None)) is not None:
                found = True
                for item in position.items(batch):
                    yield item
            if not found:
                await asyncio.sleep(self._poll_s)


class Position:
    """The last seq a follower yielded (None before its first, without a start), and how far
    it has read the spool; ``batch_bytes`` bounds the payloads of a segment batch (see
    ``read_selected``), for a server following for many clients."""

    def __init__(
        self, layout: ArchiveLayout, after: int | None, batch_bytes: int | None = None
    ) -> None:
        self.layout = layout
        self.last = after
        self._spool = _spool_of(layout)
        self._batch_bytes = batch_bytes
        self._reader: Resumable | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One pass over what is archived after ``last``: the spool first, then the segments
        listed now, then what only the spool holds (``items`` drops what is not after
        ``last``). With ``batch_bytes``, the pass's reader can be parked (``park``)."""
        spooled = self._spool.new_commands() if self._spool is not None else []
        selection = Selection(from_seq=None if self.last is None else self.last + 1)
        read: Iterator[pa.RecordBatch | SkippedSpan]
        if self._batch_bytes is None:
            read = read_selected(self.layout, selection, _BATCH_ROWS)
        else:
            read = self._reader = Resumable(self.layout, selection, _BATCH_ROWS, self._batch_bytes)
        for batch in read:
            if isinstance(batch, pa.RecordBatch):  # no time range, so nothing is skipped
                yield batch
        if spooled:
            by_seq = {row[0]: row for row in reversed(spooled)}  # a seq received twice: the first
            yield _as_batch([by_seq[seq] for seq in sorted(by_seq)])

    def park(self) -> None:
        """Lets the pass's reader go of its open segment (see ``Resumable``): never while
        ``batches`` is being advanced."""
        if self._reader is not None:
            self._reader.park()

    def items(self, batch: pa.RecordBatch) -> Iterator[ReplayRecord | ReplayGap]:
        columns = [column.to_pylist() for column in batch.columns]
        for seq, ts_ms, ingest, publish, recv, raw in zip(*columns, strict=True):
            if seq <= (-1 if self.last is None else self.last):
                continue  # a segment compacted under a pass can be read again: never twice
            if self.last is not None and seq > self.last + 1:
                yield ReplayGap(self.last + 1, seq - 1, span(self.last + 1, seq - 1), None)
            self.last = seq
            yield ReplayRecord(seq, ts_ms, ingest, publish, recv, raw, None)


def _spool_of(layout: ArchiveLayout) -> SpoolTail | None:
    """The recorder's spool; none on an object store, where a recorder keeps its spool on its
    own disk (``--spool-dir``): a follower there sees a command once its segment is uploaded."""
    return None if isinstance(layout.root, StorePath) else SpoolTail(layout.spool_dir)


def _as_batch(rows: list[SpooledCommand]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(column, field.type) for column, field in zip(columns, RAW_SCHEMA, strict=True)],
        schema=RAW_SCHEMA,
    )
