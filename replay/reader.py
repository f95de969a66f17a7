"""Reading the archive for a replay: lazily, segment by segment, row group by row group.

Segments come in seq order (``ArchiveLayout.segments``). Whole segments are skipped by the seqs
in their names and by the UTC hour in their path, row groups by their Parquet statistics, and no
more than one batch of rows is held at a time, so memory stays flat whether the range is a
minute or a month. A reader given ``batch_bytes`` (a server's, one per client) holds less: its
batches carry about that many bytes of payloads (rows per batch from the row group's mean
payload size), and it streams each column chunk through a small buffer rather than loading
the row group's chunks whole (pyarrow's ``pre_buffer``: a row group's compressed bytes,
megabytes, per reader); ``replay.resumable`` lets such a reader close its segment while idle.
Segments are listed when reading starts: one a recorder seals later is not seen by a replay
already under way. A listed segment that is gone when its turn comes, or while it is read (an
object store cannot keep a deleted object readable), was merged into a larger one by ``replica
compact`` (or, on a store, split by ``replica heal``): segments are listed again, and reading
goes on after the last seq read, so a replay across a compaction emits every command once.

Data skipped only because its times lie outside the time range is still present in the
archive: it is reported as a ``SkippedSpan`` so that gap tracking counts its seqs as held.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from replica.replay.selection import Selection
from replica.schemas.archive import MS_PER_HOUR, RAW_SCHEMA, ArchiveLayout, Segment
from replica.schemas.errors import ArchiveError
from replica.schemas.storepath import parquet_file

RAW_COLUMNS = RAW_SCHEMA.names
_SEQ, _TS_MS, _RAW = (RAW_COLUMNS.index(name) for name in ("seq", "ts_ms", "raw"))
_EARLIEST_MS = -(2**63)
STREAM_BUFFER_BYTES = 64 * 1024  # a streaming reader's read size within a column chunk


class SkippedSpan(NamedTuple):
    """Seqs the archive holds between first_seq and last_seq, not read (times out of range)."""

    first_seq: int
    last_seq: int


def read_selected(
    layout: ArchiveLayout,
    selection: Selection,
    batch_rows: int,
    batch_bytes: int | None = None,
    listed: Callable[[], list[Segment]] | None = None,
) -> Generator[pa.RecordBatch | SkippedSpan]:
    """Batches of raw rows (all columns, seq-sorted) within the seq range, in seq order: of
    ``batch_rows`` rows, or fewer where they would carry more than ``batch_bytes`` of payloads.
    ``listed``, when given, lists the segments instead of ``layout.segments``.

    Rows are not filtered by time (see ``Selection.time_mask``); whole row groups and segments
    out of the time range are skipped and reported as ``SkippedSpan``.
    """
    read_to = None  # the last seq of the last segment read
    while True:
        for segment in (listed or layout.segments)():
            if selection.to_seq is not None and segment.first_seq > selection.to_seq:
                return
            if not selection.holds_seqs(segment.first_seq, segment.last_seq):
                continue
            # The hour bounds a segment's ts_ms from above only: a command whose ts_ms stepped
            # back into an earlier hour stays in the segment that was open (see the recorder).
            hour = segment.hour
            if hour is not None and not selection.holds_times(
                _EARLIEST_MS, (hour + 1) * MS_PER_HOUR - 1
            ):
                yield SkippedSpan(*selection.clip(segment.first_seq, segment.last_seq))
            else:
                try:
                    parquet = _open(segment, streamed=batch_bytes is not None)
                    for item in _read_segment(parquet, segment, selection, batch_rows, batch_bytes):
                        yield item
                        read_to = last_seq(item)
                except FileNotFoundError:
                    break  # compacted since the listing
                except ArchiveError:
                    if segment.path.exists():
                        raise
                    # Deleted while opened or read: on a store, merged (or split by a heal)
                    # since the listing, which a store says as a failed read, not as missing.
                    break
            read_to = segment.last_seq
        else:
            return
        if read_to is not None:
            selection = replace(selection, from_seq=read_to + 1)


def last_seq(item: pa.RecordBatch | SkippedSpan) -> int:
    """The last seq an item of ``read_selected`` stands for (batches are seq-sorted)."""
    if isinstance(item, SkippedSpan):
        return item.last_seq
    return int(item.column(0)[-1].as_py())


def _open(segment: Segment, streamed: bool) -> pq.ParquetFile:
    buffering = {"pre_buffer": False, "buffer_size": STREAM_BUFFER_BYTES} if streamed else {}
    try:
        parquet = parquet_file(segment.path, **buffering)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ArchiveError(f"cannot read segment {segment.path}: {exc}") from exc
    schema = parquet.schema_arrow
    for field in RAW_SCHEMA:
        found = schema.field(field.name) if field.name in schema.names else None
        if found is None or found.type != field.type:
            raise ArchiveError(
                f"segment {segment.path} has no {field.type} column {field.name}; "
                "replica verify names every problem"
            )
    return parquet


def _min_max(group: pq.RowGroupMetaData, column: int) -> tuple[int, int] | None:
    stats = group.column(column).statistics
    if stats is None or not stats.has_min_max:
        return None
    return stats.min, stats.max


def _rows_within(group: pq.RowGroupMetaData, batch_rows: int, batch_bytes: int | None) -> int:
    """Rows per batch of this row group: ``batch_rows``, or as many of its rows as carry about
    ``batch_bytes`` of payloads (at least one)."""
    payload_bytes, rows = int(group.column(_RAW).total_uncompressed_size), int(group.num_rows)
    if batch_bytes is None or payload_bytes <= 0:
        return batch_rows
    return max(1, min(batch_rows, batch_bytes * rows // payload_bytes))


def _read_segment(
    parquet: pq.ParquetFile,
    segment: Segment,
    selection: Selection,
    batch_rows: int,
    batch_bytes: int | None,
) -> Iterator[pa.RecordBatch | SkippedSpan]:
    metadata = parquet.metadata
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        seqs, times = _min_max(group, _SEQ), _min_max(group, _TS_MS)
        if seqs is not None:
            if selection.to_seq is not None and seqs[0] > selection.to_seq:
                return
            if not selection.holds_seqs(*seqs):
                continue
            if times is not None and not selection.holds_times(*times):
                yield SkippedSpan(*selection.clip(*seqs))
                continue
        try:
            for batch in parquet.iter_batches(
                batch_size=_rows_within(group, batch_rows, batch_bytes),
                row_groups=[index],
                columns=RAW_COLUMNS,
                use_threads=False,
            ):
                selected = selection.seq_slice(batch)
                if selected.num_rows:
                    yield selected
                if selected.num_rows < batch.num_rows and selection.beyond(batch.column(0)[-1]):
                    return
        except (OSError, pa.ArrowException) as exc:
            raise ArchiveError(f"cannot read segment {segment.path}: {exc}") from exc


def recorded_gaps(layout: ArchiveLayout) -> list[tuple[int, int, str]]:
    """(from_seq, to_seq, cause) of every gap record, sorted."""
    rows = layout.gap_rows(["from_seq", "to_seq", "cause"])
    return sorted((row["from_seq"], row["to_seq"], row["cause"]) for row in rows)
