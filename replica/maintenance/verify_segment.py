"""Checking one raw segment, a row group at a time.

A compacted segment holds a million rows or more; reading it whole would make ``verify``'s
memory follow the largest file in the archive. Each row group is read, checked against its page
checksums and its footer statistics, and let go before the next: what carries over from one to
the next is the last seq, the latest hour and the runs of seqs found so far. Nor is a row group
held whole: its payloads, most of its bytes (131,072 of a kilobyte each are 128 MiB), are read
in batches of about ``PAYLOAD_BATCH_BYTES``, streamed rather than loaded a column chunk at once,
and their footer statistics checked against the running min and max.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replica.maintenance.checksums import has_page_checksums
from replica.maintenance.node_order import BlockMark, OrderCheck, segment_problems
from replica.schemas.archive import MS_PER_HOUR, RAW_SCHEMA, Segment, hour_partition
from replica.schemas.seqranges import Range
from replica.schemas.storepath import opened, parquet_file

# A row group is read in two parts, each on one thread: the integer columns whole, then the
# payloads in batches.
_INTEGERS = [name for name in RAW_SCHEMA.names if name != "raw"]
PAYLOAD_BATCH_BYTES = 16 * 1024 * 1024
_STREAM_BUFFER_BYTES = 1024 * 1024  # read size within a column chunk


class WrongSchema(ValueError):
    """A raw file whose columns are not RAW_SCHEMA's."""


class Problems(Protocol):
    problems: list[str]
    unchecksummed: int


def describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}{'' if f.nullable else ' not null'}" for f in schema)


def row_groups(path: Path, report: Problems) -> Iterator[tuple[pq.FileMetaData, int, pa.Table]]:
    """Each row group of the raw file at ``path`` (metadata, index, some of its columns: the
    integers, then the payloads a batch at a time), read against its page checksums. Raises
    what reading raises, and WrongSchema."""
    with parquet_file(
        path, page_checksum_verification=True, pre_buffer=False, buffer_size=_STREAM_BUFFER_BYTES
    ) as parquet:
        schema = parquet.schema_arrow
        if not schema.remove_metadata().equals(RAW_SCHEMA):
            raise WrongSchema(f"schema is [{describe(schema)}], expected [{describe(RAW_SCHEMA)}]")
        metadata = parquet.metadata
        if not has_page_checksums(path, metadata):
            report.unchecksummed += 1
        for index in range(parquet.num_row_groups):
            yield metadata, index, parquet.read_row_group(index, _INTEGERS, False)
            batches = parquet.iter_batches(
                _payload_rows(metadata.row_group(index)), [index], ["raw"], False
            )
            for batch in batches:
                yield metadata, index, pa.Table.from_batches([batch])


def _payload_rows(group: pq.RowGroupMetaData) -> int:
    """Rows per batch of payloads: about ``PAYLOAD_BATCH_BYTES`` of them, at least one."""
    payload_bytes = int(group.column(RAW_SCHEMA.names.index("raw")).total_uncompressed_size)
    rows = int(group.num_rows)
    return max(1, min(rows, PAYLOAD_BATCH_BYTES * rows // max(payload_bytes, 1)))


@dataclass
class SegmentCheck:
    """What one segment holds, as far as its row groups have been read."""

    rows: int = 0
    first: int | None = None
    last: int | None = None
    runs: list[Range] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sorted: bool = True
    latest_hour: int | None = None  # of the latest ts_ms
    # The payloads of the row group being read: its index, rows read, their min and max.
    payloads: tuple[int, int, bytes | None, bytes | None] = (-1, 0, None, None)

    def add(self, metadata: pq.FileMetaData, index: int, rows: pa.Table) -> None:
        if rows.column_names == ["raw"]:
            self._add_payloads(metadata, index, rows.column("raw"))
            return
        self._note(_statistics_damage(metadata, index, rows))
        if rows.num_rows == 0 or "seq" not in rows.column_names:
            return
        self.rows += rows.num_rows
        seqs = rows.column("seq").combine_chunks()
        steps = pc.pairwise_diff(seqs)
        head, tail = seqs[0].as_py(), seqs[-1].as_py()
        if (self.last is not None and head <= self.last) or (
            rows.num_rows > 1 and pc.min(steps).as_py() <= 0
        ):
            self.sorted = False
        hour = pc.max(rows.column("ts_ms")).as_py() // MS_PER_HOUR
        self.latest_hour = hour if self.latest_hour is None else max(self.latest_hour, hour)
        runs = _runs(seqs, steps)
        if self.runs and self.last is not None and head == self.last + 1:
            runs[0] = (self.runs.pop()[0], runs[0][1])
        self.runs += runs
        self.first = head if self.first is None else self.first
        self.last = tail

    def _add_payloads(self, metadata: pq.FileMetaData, index: int, batch: pa.ChunkedArray) -> None:
        """A batch of row group ``index``'s payloads; with its last, the footer's min and max of
        them are checked against theirs."""
        held, seen, low, high = self.payloads
        if held != index:
            seen, low, high = 0, None, None
        if len(batch):
            found = pc.min_max(batch)
            least, most = found["min"].as_py(), found["max"].as_py()
            low = least if low is None else min(low, least)
            high = most if high is None else max(high, most)
        seen += len(batch)
        self.payloads = (index, seen, low, high)
        if seen == metadata.row_group(index).num_rows:
            self._note(_column_damage(metadata, index, "raw", (low, high)))

    def _note(self, damage: str | None) -> None:
        if damage is not None:
            self.problems.append(f"the footer is damaged: {damage}")


def check_segment(
    segment: Segment, report: Problems, order: OrderCheck | None = None
) -> SegmentCheck | None:
    """The segment's rows and runs of seqs, with its problems noted in ``report``; None if it
    does not read. With ``order`` (a node archive's), its blocks' rounds and times are checked
    to follow those of the segments checked before it."""
    path = segment.path
    check = SegmentCheck()
    try:
        seqs: list[int] = []  # of the row group whose payloads come next
        done = 0  # of its payloads
        for metadata, index, rows in row_groups(path, report):
            check.add(metadata, index, rows)
            if order is None:
                continue
            if "seq" in rows.column_names:
                seqs, done = rows.column("seq").to_pylist(), 0
            else:
                payloads = rows.column("raw").to_pylist()
                batch_seqs = seqs[done : done + len(payloads)]
                done += len(payloads)
                check.problems += segment_problems(path, batch_seqs, payloads, order)
    except WrongSchema as exc:
        report.problems.append(f"{path}: {exc}")
        return None
    except Exception as exc:
        report.problems.append(f"{path}: does not read: {exc}")
        return None
    report.problems += [
        problem if problem.startswith(str(path)) else f"{path}: {problem}"
        for problem in check.problems
    ]
    # Filed under the hour of its first command: a later ts_ms would seal the segment, an
    # earlier one (a clock stepping back) stays in it.
    if check.latest_hour is not None and hour_partition(check.latest_hour) != segment.partition:
        report.problems.append(
            f"{path}: its latest ts_ms is not in its partition {'/'.join(segment.partition)}"
        )
    if check.rows == 0:
        report.problems.append(f"{path}: has no rows")
    elif (check.first, check.last) != (segment.first_seq, segment.last_seq):
        report.problems.append(
            f"{path}: holds seqs {check.first}-{check.last}, not those its name says"
        )
    if not check.sorted:
        report.problems.append(f"{path}: seqs are not strictly increasing (unsorted or duplicated)")
    return check


@dataclass
class _Noted:
    problems: list[str] = field(default_factory=list)
    unchecksummed: int = 0


class _MarkedOrder(OrderCheck):
    """The order check of one segment alone, keeping its first and last blocks, so that the
    client checks the seam with the segment before it."""

    def __init__(self) -> None:
        super().__init__()
        self.first: BlockMark | None = None
        self.last: BlockMark | None = None

    def check(self, mark: BlockMark) -> list[str]:
        self.first = self.first or mark
        self.last = mark
        return super().check(mark)


@dataclass(frozen=True)
class SegmentResult:
    """What ``check_segment`` found in one segment on a cluster worker, to add to the report."""

    check: SegmentCheck | None
    problems: list[str]
    unchecksummed: int
    first_block: BlockMark | None
    last_block: BlockMark | None

    def add_to(
        self, segment: Segment, report: Problems, order: OrderCheck | None
    ) -> SegmentCheck | None:
        """Its problems into ``report``, after those of its first block against the last block
        of the segments before it (``order``, a node archive's). The worker was given the
        segment's absolute path: the problems name it as ``segment`` does."""
        checked, shown = str(segment.path.absolute()), str(segment.path)

        def named(mark: BlockMark) -> BlockMark:
            return replace(mark, where=mark.where.replace(checked, shown, 1))

        if order is not None and self.first_block is not None and self.last_block is not None:
            report.problems += order.check(named(self.first_block))
            order.follow(named(self.last_block))
        report.problems += [problem.replace(checked, shown) for problem in self.problems]
        report.unchecksummed += self.unchecksummed
        return self.check


def check_segment_task(
    path: str, first_seq: int, last_seq: int, node: bool, endpoint: str | None = None
) -> SegmentResult:
    """``check_segment`` on a cluster worker: plain strings in, a picklable result out. For a
    node archive (``node``) the blocks are checked in order within the segment only. ``path``
    may be an ``s3://`` URL, opened at ``endpoint`` with the worker's own credential chain."""
    noted = _Noted()
    order = _MarkedOrder() if node else None
    check = check_segment(Segment(opened(path, endpoint), first_seq, last_seq), noted, order)
    first, last = (order.first, order.last) if order else (None, None)
    return SegmentResult(check, noted.problems, noted.unchecksummed, first, last)


def _statistics_damage(metadata: pq.FileMetaData, index: int, rows: pa.Table) -> str | None:
    """What in row group ``index``'s footer statistics disagrees with ``rows``, some of its
    columns (a raw segment's, which are flat), or None. Readers skip row groups by them (a replay by
    seq and ts_ms, DuckDB by any column a query filters on), and no page checksum covers the
    footer: a flipped bit there would make them skip rows silently."""
    for name in rows.column_names:
        if rows.num_rows:
            actual = pc.min_max(rows.column(name))
            damage = _column_damage(
                metadata, index, name, (actual["min"].as_py(), actual["max"].as_py())
            )
        else:
            damage = _column_damage(metadata, index, name, (None, None))
        if damage is not None:
            return damage
    return None


def _column_damage(
    metadata: pq.FileMetaData, index: int, name: str, actual: tuple[object, object]
) -> str | None:
    """What in row group ``index``'s footer about column ``name`` disagrees with the (min,
    max) of its rows, or None."""
    try:
        group = metadata.row_group(index)
        column = RAW_SCHEMA.names.index(name)
        chunk = group.column(column)
        if chunk.physical_type != metadata.schema.column(column).physical_type:
            # checked first: pyarrow aborts the process on such a chunk's statistics
            return f"row group {index} says {name} is {chunk.physical_type}"
        stats = chunk.statistics
        if not group.num_rows or stats is None or not stats.has_min_max:
            return None
        if (stats.min, stats.max) != actual:
            return (
                f"the min and max of {name} in row group {index} are not its rows', and "
                "readers that skip row groups by them would miss rows"
            )
    except Exception as exc:
        return str(exc)
    return None


def _runs(seqs: pa.Array, steps: pa.Array) -> list[Range]:
    """Consecutive runs of seqs in one sorted row group."""
    # steps[i] is seqs[i] - seqs[i - 1] (null at 0): a step above 1 starts a new run at i.
    breaks = pc.indices_nonzero(pc.fill_null(pc.greater(steps, 1), False)).to_pylist()
    bounds = [0, *breaks, len(seqs)]
    return [(seqs[lo].as_py(), seqs[hi - 1].as_py()) for lo, hi in pairwise(bounds)]
