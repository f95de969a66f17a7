"""``Replay``: an archive's commands in seq order, at the pace asked, by ``for`` or ``async for``.

Each iteration is a fresh replay of the same selection: same commands, same gaps, same
schedule. Parquet batches are read one ahead on a worker thread (pyarrow decodes without the
GIL), so decompression overlaps emitting and waiting. Everything that holds the GIL (gap
tracking, turning columns into Python lists, the schedule) runs on the consuming thread, in
slices when paced: Python on a worker thread would delay a due command by up to the
interpreter's 5 ms switch interval, a slice only by its own few tens of microseconds, and the
next slice is prepared during a wait whenever one is long enough. At speed max, ``for``
converts whole batches and a command costs a tuple and nothing else: no per-command function
call, no clock reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from enum import Enum, auto
from functools import partial
from itertools import chain, islice, repeat
from typing import Any, NamedTuple, TypeVar

import pyarrow as pa
from replica.replay.gaps import GapCauses, GapTracker
from replica.replay.pacing import Pacer
from replica.replay.reader import RAW_COLUMNS, SkippedSpan, read_selected, recorded_gaps
from replica.replay.records import ReplayGap, ReplayRecord
from replica.replay.resumable import ParkWhenIdle, Resumable
from replica.replay.schedule import Schedule, check_clock, check_speed
from replica.replay.selection import Selection
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import GapInRange, UsageError
from replica.schemas.seqranges import span

# Rows per Parquet batch: enough that per-batch costs vanish.
BATCH_ROWS = 8192
# Rows turned into Python objects at a time when paced: a slice is a stall for whatever is due
# meanwhile, 15 to 50 us for 32 rows (the more, the colder an idle wait has left the CPU's
# caches), which at speed 10 of a busy feed is the spacing of a command or two.
PACED_SLICE_ROWS = 32
# ... and by ``async for`` at speed max: about 0.3 ms during which a server's event loop serves
# no one else. ``for`` at speed max converts whole batches.
ASYNC_SLICE_ROWS = 1024
# When paced, the next slice is prepared during the first wait at least this long, so that its
# cost falls in idle time rather than on the command due after the slice ends.
_PREPARE_S = 0.0002

_new_record = partial(tuple.__new__, ReplayRecord)  # builds the tuple in C, no __new__ call
T = TypeVar("T")


class _Chunk(NamedTuple):
    columns: list[Any]  # the raw columns as lists, then the scheduled offsets
    gaps: list[tuple[int, list[ReplayGap]]]  # (i, gaps): report before the chunk's i-th record


class Replay:
    def __init__(
        self,
        layout: ArchiveLayout,
        selection: Selection,
        *,
        speed: float | None = None,
        clock: str = "ts_ms",
        precise: bool = False,
        fail_on_gap: bool = False,
        transform: Callable[[ReplayRecord], Any] | None = None,
        pacer: Pacer | None = None,
        batch_bytes: int | None = None,
    ) -> None:
        """``transform`` turns each record into what is yielded instead (gaps pass as they
        are); at paced speeds it runs before the wait, so its cost does not make a command
        late. ``pacer`` stands in for the monotonic clock (tests use a virtual one).
        ``batch_bytes`` bounds the payloads read per batch (see ``read_selected``): a server
        holds a replay per client."""
        self.layout = layout
        self.selection = selection
        self.speed = None if speed is None else check_speed(speed)
        self.clock = check_clock(clock)
        if precise and self.speed is None:
            raise UsageError("precise pacing needs a speed; at speed max nothing waits")
        self.fail_on_gap = fail_on_gap
        self._transform = transform
        self._pacer = pacer or Pacer(precise=precise)
        self._batch_bytes = batch_bytes
        self.started_at: float | None = None  # monotonic time of the latest iteration's start

    def __iter__(self) -> Iterator[Any]:
        return self._emit() if self.speed is None else self._emit_paced()

    def __aiter__(self) -> AsyncGenerator[Any, None]:
        return self._emit_async()

    # ---- emitting: at once, or each record when due -----------------------------------------

    def _emit(self) -> Iterator[Any]:
        self.started_at = self._pacer.now()
        for chunk in self._chunks(_Slicer(self, BATCH_ROWS)):
            yield from self._items(chunk, self._transform)

    def _emit_paced(self) -> Iterator[Any]:
        now, wait, transform = self._pacer.now, self._pacer.wait_until, self._transform
        chunks = self._chunks(_Slicer(self, PACED_SLICE_ROWS))
        self.started_at = start = None
        pulled = _pull(chunks)
        while pulled is not None:
            chunk = _unwrap(pulled)
            upcoming: _Pulled | _Later = _Later.LATER
            if start is None:
                self.started_at = start = now()
            for item in self._items(chunk, None):
                if type(item) is ReplayGap:
                    yield item
                    continue
                due = start + item.scheduled_s
                out = item if transform is None else transform(item)
                if upcoming is _Later.LATER and due - now() > _PREPARE_S:
                    upcoming = _pull(chunks)
                if now() < due:
                    wait(due)
                yield out
            pulled = _pull(chunks) if upcoming is _Later.LATER else upcoming

    async def _emit_async(self) -> AsyncGenerator[Any, None]:
        now, wait, transform = self._pacer.now, self._pacer.wait_until_async, self._transform
        paced = self.speed is not None
        chunks = self._chunks_async(_Slicer(self, PACED_SLICE_ROWS if paced else ASYNC_SLICE_ROWS))
        if not paced:
            self.started_at = now()
            async for chunk in chunks:
                for item in self._items(chunk, transform):
                    yield item
            return
        self.started_at = start = None
        pulled = await _pull_async(chunks)
        while pulled is not None:
            chunk = _unwrap(pulled)
            upcoming: _Pulled | _Later = _Later.LATER
            if start is None:
                self.started_at = start = now()
            for item in self._items(chunk, None):
                if type(item) is ReplayGap:
                    yield item
                    continue
                due = start + item.scheduled_s
                out = item if transform is None else transform(item)
                if upcoming is _Later.LATER and due - now() > _PREPARE_S:
                    upcoming = await _pull_async(chunks)
                if now() < due:
                    await wait(due)
                yield out
            pulled = await _pull_async(chunks) if upcoming is _Later.LATER else upcoming

    # ---- chunks into records and gaps --------------------------------------------------------

    def _batches(self) -> Iterator[pa.RecordBatch | SkippedSpan]:
        if self._batch_bytes is not None:
            return Resumable(self.layout, self.selection, BATCH_ROWS, self._batch_bytes)
        return read_selected(self.layout, self.selection, BATCH_ROWS)

    def _chunks(self, slicer: _Slicer) -> Iterator[_Chunk]:
        for batch in chain(_read_ahead(self._batches()), [None]):
            yield from slicer.chunks(batch)

    async def _chunks_async(self, slicer: _Slicer) -> AsyncIterator[_Chunk]:
        batches = self._batches()
        parking = ParkWhenIdle(batches.park) if isinstance(batches, Resumable) else None
        async for batch in _read_ahead_async(batches, parking):
            for chunk in slicer.chunks(batch):
                yield chunk

    def _items(self, chunk: _Chunk, transform: Callable[[Any], Any] | None) -> Iterator[Any]:
        records: Iterator[Any] = map(_new_record, zip(*chunk.columns, strict=False))
        if transform is not None:
            records = map(transform, records)
        return self._interleave(records, chunk.gaps) if chunk.gaps else records

    def _interleave(
        self, records: Iterator[Any], gaps: list[tuple[int, list[ReplayGap]]]
    ) -> Iterator[Any]:
        done = 0
        for at, found in gaps:
            yield from islice(records, at - done)
            done = at
            for gap in found:
                if self.fail_on_gap:
                    raise GapInRange(
                        f"archive {self.layout.root} is missing seqs {gap.from_seq}-{gap.to_seq} "
                        f"inside the replayed range ({gap.missing} seqs, cause "
                        f"{gap.cause or 'unknown'})",
                        gap,
                    )
                yield gap
        yield from records


class _Failed(NamedTuple):
    """A failure to get the next chunk, raised where that chunk would have started."""

    error: Exception


class _Later(Enum):
    """The next chunk is not prepared yet."""

    LATER = auto()


_Pulled = _Chunk | _Failed | None  # what pulling the next chunk gave: None after the last


def _pull(chunks: Iterator[_Chunk]) -> _Pulled:
    try:
        return next(chunks, None)
    except Exception as exc:
        return _Failed(exc)


async def _pull_async(chunks: AsyncIterator[_Chunk]) -> _Pulled:
    try:
        return await anext(chunks, None)
    except Exception as exc:
        return _Failed(exc)


def _unwrap(pulled: _Chunk | _Failed) -> _Chunk:
    if isinstance(pulled, _Failed):
        raise pulled.error
    return pulled


class _Slicer:
    """One iteration's state: turns batches into chunks of Python values with gaps placed."""

    def __init__(self, replay: Replay, slice_rows: int) -> None:
        selection = replay.selection
        self._selection = selection
        self._slice_rows = slice_rows
        self._tracker = GapTracker(selection.from_seq, selection.to_seq)
        self._causes = GapCauses(partial(recorded_gaps, replay.layout))
        self._schedule = None if replay.speed is None else Schedule(replay.speed, replay.clock)
        self._clock_column = RAW_COLUMNS.index(replay.clock)

    def chunks(self, batch: pa.RecordBatch | SkippedSpan | None) -> Iterator[_Chunk]:
        """The chunks of a batch; None, after the last batch, gives the gaps at the end."""
        if batch is None:
            gaps = self._tracker.finish()
            if gaps:
                yield _Chunk([[]], [(0, self._gaps(gaps))])
            return
        if isinstance(batch, SkippedSpan):
            self._tracker.skipped(*batch)
            return
        selection, schedule = self._selection, self._schedule
        kept = selection.time_mask(batch.column(1)) if selection.by_time else None
        placed = self._tracker.held(batch.column(0), kept)
        records: pa.RecordBatch = batch if kept is None else batch.filter(kept)
        rows, step = records.num_rows, self._slice_rows
        for low in range(0, rows, step):
            part = records if rows <= step else records.slice(low, step)
            columns: list[Any] = [column.to_pylist() for column in part.columns]
            columns.append(
                schedule.offsets(columns[self._clock_column]) if schedule else repeat(None)
            )
            before = [
                (at - low, self._gaps(found)) for at, found in placed if low <= at < low + step
            ]
            yield _Chunk(columns, before)

    def _gaps(self, found: list[tuple[int, int]]) -> list[ReplayGap]:
        return [
            ReplayGap(low, high, span(low, high), self._causes.cause(low, high))
            for low, high in found
        ]


def _read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each next one produced on a worker thread while the caller uses this one."""
    with ThreadPoolExecutor(1, thread_name_prefix="replay-reader") as worker:
        ahead = worker.submit(next, items, None)
        while (item := ahead.result()) is not None:
            ahead = worker.submit(next, items, None)
            yield item


async def _read_ahead_async(
    items: Iterator[T], parking: ParkWhenIdle | None = None
) -> AsyncIterator[T | None]:
    """``_read_ahead`` for asyncio, then None: the event loop runs while the worker reads.
    With ``parking``, a read done and not followed by the next for a while parks the reader.

    The read is handed to the executor at once, not from a task: a consumer that never
    suspends (a precise wait spins) would otherwise start it only when it needs the result."""
    loop = asyncio.get_running_loop()
    ahead = loop.run_in_executor(None, next, items, None)
    try:
        while (item := await ahead) is not None:
            if parking is not None:
                parking.busy()  # before the next read: the reader is never parked under one
            ahead = loop.run_in_executor(None, next, items, None)
            if parking is not None:
                ahead.add_done_callback(parking.idle)
            yield item
    finally:
        if parking is not None:
            ahead.remove_done_callback(parking.idle)
            parking.busy()
        ahead.cancel()
    yield None
