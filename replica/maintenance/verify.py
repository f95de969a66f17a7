"""Checking an archive against its contract, and listing its gaps.

``verify`` reads every file in full, checking each page against its checksum, so a file that
cannot be decompressed, or whose bytes changed on disk, is found tonight rather than by next
month's backtest. Memory is bounded by the largest file, not the archive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replica.maintenance.checksums import has_page_checksums
from replica.maintenance.node_order import OrderCheck, segment_problems
from replica.schemas.archive import (
    GAP_SCHEMA,
    MS_PER_HOUR,
    QUARANTINE_SCHEMA,
    RAW_SCHEMA,
    ArchiveLayout,
    hour_partition,
)
from replica.schemas.decoded import DECODED_DIR, SEGMENTS_TABLE
from replica.schemas.errors import UsageError
from replica.schemas.heals import HEAL_SCHEMA, healed_ranges, heals_dir
from replica.schemas.seqranges import Range, holes, span, subtract
from replica.schemas.seqspace import NODE, recorded_kind

Ranges = list[Range]  # sorted, disjoint


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segments: int = 0
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    gap_records: int = 0
    missing: int = 0
    unchecksummed: int = 0  # files without page checksums, written by an older replica

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class GapRecord:
    from_seq: int
    to_seq: int
    missing: int
    cause: str
    detected_ts_us: int
    before_ts_ms: int | None
    after_ts_ms: int


def read_gaps(root: str | os.PathLike[str]) -> list[GapRecord]:
    """What is still missing: every gap record, in seq order, less the seqs ``replica heal``
    has filled since (a record partly healed gives its parts still missing). The records
    themselves, healed or not, are the ``gaps`` table."""
    layout = ArchiveLayout.open(root)
    healed = healed_ranges(layout)
    records = []
    for row in layout.gap_rows():
        for lo, hi in subtract([(row["from_seq"], row["to_seq"])], healed):
            records.append(
                GapRecord(**{**row, "from_seq": lo, "to_seq": hi, "missing": span(lo, hi)})
            )
    records.sort(key=lambda g: (g.from_seq, g.to_seq))
    return records


class _SegmentVanished(Exception):
    """A listed segment is gone: a compaction swapped its day in since the listing."""


# Each compaction swaps a day at most once, so a few fresh listings always see a settled one.
_LISTINGS = 5


def verify(root: str | os.PathLike[str]) -> Report:
    layout = ArchiveLayout.open(root)
    for _ in range(_LISTINGS - 1):
        try:
            return _verify(layout)
        except _SegmentVanished:
            continue
    return _verify(layout, relist=False)


def _verify(layout: ArchiveLayout, relist: bool = True) -> Report:
    report = Report()
    for path in layout.stray_raw_files():
        report.problems.append(
            f"{path}: not named raw/date=*/hour=*/<first_seq>-<last_seq>.parquet"
        )
    # Heal and gap records before the segments: a heal swaps a day's raw directory in before its
    # records, so records read first never claim seqs that the segments read after lack.
    healed = _read_heal_files(layout, report)
    gaps = _check_gap_files(layout, report)
    present = _check_segments(layout, report, relist)
    for lo, hi in subtract(healed, present):
        report.problems.append(f"heal records say seqs {lo}-{hi} were added, but they are missing")
    _check_table_files(layout, layout.quarantine_dir, QUARANTINE_SCHEMA, report)
    _check_decoded_files(layout, report)
    _compare_gaps(present, subtract(gaps, healed), report)
    if report.unchecksummed:
        report.notes.append(
            f"{report.unchecksummed} files have no page checksums (an older replica wrote "
            "them): damage inside them is found only where it breaks decompression or decoding"
        )
    if layout.temporary_files():
        report.notes.append("temporary files present: a write is in progress or was interrupted")
    if any(layout.spool_dir.glob("*.wal")):
        report.notes.append(
            "spool files present: a recorder is running, or the next one will "
            "recover them into segments"
        )
    return report


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}{'' if f.nullable else ' not null'}" for f in schema)


def _read(path: Path, schema: pa.Schema, report: Report) -> pa.Table | None:
    """The whole file, if it reads, its page checksums match and it has ``schema``; otherwise
    None, with the problem noted."""
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as parquet:
            table = parquet.read()
            if not has_page_checksums(path, parquet.metadata):
                report.unchecksummed += 1
    except Exception as exc:
        report.problems.append(f"{path}: does not read: {exc}")
        return None
    if not table.schema.remove_metadata().equals(schema.remove_metadata()):
        report.problems.append(
            f"{path}: schema is [{_describe(table.schema)}], expected [{_describe(schema)}]"
        )
        return None
    return table


def _block_order(layout: ArchiveLayout, report: Report) -> OrderCheck | None:
    """A check of block order for a node archive, None for a feed one."""
    try:
        kind = recorded_kind(layout)
    except UsageError as mixed:
        report.problems.append(str(mixed))
        return None
    return OrderCheck() if kind == NODE else None


def _check_segments(layout: ArchiveLayout, report: Report, relist: bool) -> Ranges:
    """Check each raw file; returns the seq ranges the archive holds. With ``relist``, a
    segment gone since the listing raises ``_SegmentVanished`` rather than being a problem."""
    present: Ranges = []
    order = _block_order(layout, report)
    for segment in layout.segments():
        path = segment.path
        table = _read(path, RAW_SCHEMA, report)
        if table is None:
            if relist and not path.exists():
                raise _SegmentVanished(path)
            continue
        report.segments += 1
        report.rows += table.num_rows
        _check_statistics(path, table, report)
        seqs = table.column("seq").combine_chunks()
        if table.num_rows == 0:
            report.problems.append(f"{path}: has no rows")
            continue
        first, last = seqs[0].as_py(), seqs[-1].as_py()
        if (first, last) != (segment.first_seq, segment.last_seq):
            report.problems.append(f"{path}: holds seqs {first}-{last}, not those its name says")
        steps = pc.pairwise_diff(seqs)
        if table.num_rows > 1 and pc.min(steps).as_py() <= 0:
            report.problems.append(
                f"{path}: seqs are not strictly increasing (unsorted or duplicated)"
            )
            continue
        # Filed under the hour of its first command: a later ts_ms would seal the segment, an
        # earlier one (a clock stepping back) stays in it.
        partition = segment.partition
        high = pc.max(table.column("ts_ms")).as_py() // MS_PER_HOUR
        if hour_partition(high) != partition:
            report.problems.append(
                f"{path}: its latest ts_ms is not in its partition {'/'.join(partition)}"
            )
        if present and first <= present[-1][1]:
            report.problems.append(f"{path}: seqs {first}-{last} overlap another segment")
            continue
        present += _runs(seqs, steps)
        if order is not None:
            payloads = table.column("raw").to_pylist()
            report.problems += segment_problems(path, seqs.to_pylist(), payloads, order)
    if present:
        report.first_seq, report.last_seq = present[0][0], present[-1][1]
    return present


def _check_statistics(path: Path, table: pa.Table, report: Report) -> None:
    """Each row group's min and max in the footer against its rows. Readers skip row groups by
    them (a replay by seq and ts_ms, DuckDB by any column a query filters on), and no page
    checksum covers the footer: a flipped bit there would make them skip rows silently."""
    try:
        damage = _statistics_damage(pq.read_metadata(path), table)
    except Exception as exc:
        damage = str(exc)
    if damage is not None:
        report.problems.append(f"{path}: the footer is damaged: {damage}")


def _statistics_damage(metadata: pq.FileMetaData, table: pa.Table) -> str | None:
    """What in the footer disagrees with the rows of ``table`` (a raw segment's, whose columns
    are flat), or None."""
    offset = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        rows = table.slice(offset, group.num_rows)
        offset += group.num_rows
        for column, name in enumerate(table.column_names):
            chunk = group.column(column)
            if chunk.physical_type != metadata.schema.column(column).physical_type:
                # checked first: pyarrow aborts the process on such a chunk's statistics
                return f"row group {index} says {name} is {chunk.physical_type}"
            stats = chunk.statistics
            if not group.num_rows or stats is None or not stats.has_min_max:
                continue
            actual = pc.min_max(rows.column(name))
            if (stats.min, stats.max) != (actual["min"].as_py(), actual["max"].as_py()):
                return (
                    f"the min and max of {name} in row group {index} are not its rows', and "
                    "readers that skip row groups by them would miss rows"
                )
    return None


def _runs(seqs: pa.Array, steps: pa.Array) -> Ranges:
    """Consecutive runs of seqs in one sorted file."""
    # steps[i] is seqs[i] - seqs[i - 1] (null at 0): a step above 1 starts a new run at i.
    breaks = pc.indices_nonzero(pc.fill_null(pc.greater(steps, 1), False)).to_pylist()
    bounds = [0, *breaks, len(seqs)]
    return [(seqs[lo].as_py(), seqs[hi - 1].as_py()) for lo, hi in pairwise(bounds)]


def _check_gap_files(layout: ArchiveLayout, report: Report) -> Ranges:
    gaps: Ranges = []
    for path in layout.table_files(layout.gaps_dir):
        table = _read(path, GAP_SCHEMA, report)
        if table is None:
            continue
        for row in table.to_pylist():
            lo, hi = row["from_seq"], row["to_seq"]
            if lo > hi or row["missing"] != span(lo, hi):
                report.problems.append(f"{path}: gap record {lo}-{hi} is inconsistent")
                continue
            gaps.append((lo, hi))
            report.gap_records += 1
    gaps.sort()
    for (_, hi), (lo, _) in pairwise(gaps):
        if lo <= hi:
            report.problems.append(f"gap records overlap at seq {lo}")
    return gaps


def _read_heal_files(layout: ArchiveLayout, report: Report) -> Ranges:
    """The healed ranges, sorted; each must be in the archive, since heal added them."""
    healed: Ranges = []
    for path in layout.table_files(heals_dir(layout)):
        table = _read(path, HEAL_SCHEMA, report)
        if table is not None:
            columns = table.column("from_seq").to_pylist(), table.column("to_seq").to_pylist()
            healed += zip(*columns, strict=True)
    healed.sort()
    return healed


def _check_table_files(layout: ArchiveLayout, table_dir: Path, schema: pa.Schema, report: Report):
    for path in layout.table_files(table_dir):
        _read(path, schema, report)


def _check_decoded_files(layout: ArchiveLayout, report: Report) -> None:
    """Read every decoded file, a row group at a time, against its page checksums. A file gone
    since the listing was replaced or dropped by a decode or a compaction: not a problem."""
    for path in sorted(layout.root.glob(f"{DECODED_DIR}/*/date=*/*.parquet")):
        try:
            with pq.ParquetFile(path, page_checksum_verification=True) as parquet:
                for index in range(parquet.num_row_groups):
                    parquet.read_row_group(index)
                if not has_page_checksums(path, parquet.metadata):
                    report.unchecksummed += 1
        except Exception as exc:
            if not path.exists():
                continue
            marker = layout.root / DECODED_DIR / SEGMENTS_TABLE / path.parent.name / path.name
            report.problems.append(
                f"{path}: does not read: {exc}; delete {marker} and run 'replica decode' "
                "to write the segment's decoded files again"
            )


def _compare_gaps(present: Ranges, gaps: Ranges, report: Report) -> None:
    missing = holes(present)
    report.missing = sum(span(lo, hi) for lo, hi in missing)
    for lo, hi in subtract(missing, gaps):
        report.problems.append(f"seqs {lo}-{hi} are missing and no gap record says so")
    first, last = (present[0][0], present[-1][1]) if present else (0, -1)
    for lo, hi in subtract(gaps, missing):
        if first <= lo and hi <= last:
            # An import filled a hole after it was recorded: gap records are never rewritten.
            report.notes.append(f"seqs {lo}-{hi} were backfilled after their gap was recorded")
        else:
            report.problems.append(
                f"gap records say seqs {lo}-{hi} are missing, but they lie outside the "
                f"archive's range {first}-{last}"
            )
