"""A server's reader of the archive that lets go of its open segment while its client is idle.

A reader in the middle of a segment holds the Parquet page it is reading, decompressed: for the
payload column about a megabyte (the writer's data page size), whatever the batches it gives.
A server holds a reader per client, and a client that has stopped reading (its buffers full) or
waits far apart (a paced replay) would hold that page for nothing. ``Resumable`` gives
``read_selected``'s items and, when parked (``park``), closes its segment; asked for the next
item, it reads on after the last seq it gave, in the segments listed when it started (one
sealed later is not seen, as without a park). The row group it was in is decoded again from its
start to get there: a cost paid once per park, and ``park_when_idle`` parks a reader only once
it has been idle for ``PARK_AFTER_S``. An idle client then holds its batches alone, bounded by
bytes (``batch_bytes``), not by the archive's pages or row groups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace

import pyarrow as pa
from replica.replay.reader import SkippedSpan, last_seq, read_selected
from replica.replay.selection import Selection
from replica.schemas.archive import ArchiveLayout, Segment

PARK_AFTER_S = 1.0  # a reader not asked for its next item this long lets go of its segment


class Resumable:
    """``read_selected(layout, selection, batch_rows, batch_bytes)`` that can be parked."""

    def __init__(
        self, layout: ArchiveLayout, selection: Selection, batch_rows: int, batch_bytes: int
    ) -> None:
        self._layout = layout
        self._selection: Selection | None = selection  # what is left to read; None: nothing
        self._batch_rows = batch_rows
        self._batch_bytes = batch_bytes
        self._items: Generator[pa.RecordBatch | SkippedSpan] | None = None
        self._listing = _Listing(layout)

    def __iter__(self) -> Iterator[pa.RecordBatch | SkippedSpan]:
        return self

    def __next__(self) -> pa.RecordBatch | SkippedSpan:
        if self._selection is None:
            raise StopIteration
        if self._items is None:
            self._items = read_selected(
                self._layout, self._selection, self._batch_rows, self._batch_bytes, self._listing
            )
        try:
            item = next(self._items)
        except StopIteration:
            self._selection = self._items = None
            raise
        self._read_past(last_seq(item))
        return item

    def park(self) -> None:
        """Closes the open segment, if any; reading goes on where it stopped when next asked.
        Never while a ``next`` runs (on another thread)."""
        if self._items is not None:
            self._items.close()
            self._items = None

    def _read_past(self, seq: int) -> None:
        """What is left to read: after ``seq``, up to the first listing's last seq."""
        assert self._selection is not None and self._listing.last_seq is not None
        to_seq = self._listing.last_seq
        if self._selection.to_seq is not None:
            to_seq = min(to_seq, self._selection.to_seq)
        if seq >= to_seq:
            self._selection = None
        else:
            self._selection = replace(self._selection, from_seq=seq + 1, to_seq=to_seq)


class _Listing:
    """Lists the segments and remembers the first listing's last seq. Apart from the reader,
    which its reading generator would otherwise refer back to: a cycle, freed (and its file
    closed) only by the garbage collector rather than as soon as its client leaves."""

    def __init__(self, layout: ArchiveLayout) -> None:
        self._layout = layout
        self.last_seq: int | None = None

    def __call__(self) -> list[Segment]:
        segments = self._layout.segments()
        if self.last_seq is None:
            self.last_seq = segments[-1].last_seq if segments else -1
        return segments


class ParkWhenIdle:
    """Calls ``park`` once a reader has not been asked for an item for ``PARK_AFTER_S``: call
    ``idle`` on the event loop's thread when its latest read is done (a done callback of the
    read's future will do) and ``busy`` before asking it again."""

    def __init__(self, park: Callable[[], None]) -> None:
        self._park = park
        self._timer: asyncio.TimerHandle | None = None

    def idle(self, *_: object) -> None:
        self.busy()
        self._timer = asyncio.get_running_loop().call_later(PARK_AFTER_S, self._park)

    def busy(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
