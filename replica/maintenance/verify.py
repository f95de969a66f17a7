"""Checking an archive against its contract, and listing its gaps.

``verify`` reads every file in full, checking each page against its checksum, so a file that
cannot be decompressed, or whose bytes changed on disk, is found tonight rather than by next
month's backtest: every file of the archive, or of the days asked for (``verify_scope``). Raw
segments are read a row group at a time (``verify_segment``), so memory is bounded by a row
group, not by the largest file.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise
from pathlib import Path

import pyarrow as pa

from replica.maintenance.checksums import has_page_checksums
from replica.maintenance.node_order import OrderCheck
from replica.maintenance.verify_scope import Scope, some_days, whole_archive
from replica.maintenance.verify_segment import (
    SegmentCheck,
    SegmentResult,
    check_segment,
    check_segment_task,
    describe,
)
from replica.schemas.archive import GAP_SCHEMA, QUARANTINE_SCHEMA, ArchiveLayout, Segment
from replica.schemas.cluster import Cluster, run_tasks
from replica.schemas.decoded import DECODED_DIR, SEGMENTS_TABLE
from replica.schemas.errors import UsageError
from replica.schemas.heals import HEAL_SCHEMA, healed_ranges
from replica.schemas.seqranges import Range, holes, span, subtract, union
from replica.schemas.seqspace import NODE, recorded_kind
from replica.schemas.storepath import parquet_file, task_endpoint, task_path

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
            still = {"from_seq": lo, "to_seq": hi, "missing": span(lo, hi)}
            records.append(GapRecord(**{**row, **still}))
    records.sort(key=lambda g: (g.from_seq, g.to_seq))
    return records


class _SegmentVanished(Exception):
    """A listed segment is gone: a compaction swapped its day in since the listing."""


# Each compaction swaps a day at most once, so a few fresh listings always see a settled one.
_LISTINGS = 5


def verify(
    root: str | os.PathLike[str], days: list[date] | None = None, cluster: Cluster | None = None
) -> Report:
    """Check the archive at ``root``: all of it, or only ``days`` (sorted) and their seams with
    the days around them. ``cluster`` (a Dask scheduler's address, or a ``distributed.Client``)
    checks each raw segment as a task on its workers, which must see the archive at the same
    path; what spans segments is checked here."""
    layout = ArchiveLayout.open(root)
    for _ in range(_LISTINGS - 1):
        try:
            return _verify(layout, days, cluster)
        except _SegmentVanished:
            continue
    return _verify(layout, days, cluster, relist=False)


def _verify(
    layout: ArchiveLayout, days: list[date] | None, cluster: Cluster | None, relist: bool = True
) -> Report:
    report = Report()
    scope = whole_archive(layout) if days is None else some_days(layout, days)
    for path in scope.stray:
        report.problems.append(
            f"{path}: not named raw/date=*/hour=*/<first_seq>-<last_seq>.parquet"
        )
    # Heal and gap records before the segments: a heal swaps a day's raw directory in before its
    # records, so records read first never claim seqs that the segments read after lack.
    healed = _read_heal_files(scope.heal_files, report)
    gaps = _check_gap_files(scope.gap_files, report)
    order = _block_order(layout, scope, report)
    present = _check_segments(scope, report, relist, order, cluster)
    _check_superseded(scope.superseded, report)
    for lo, hi in _within(subtract(healed, present), scope.window):
        report.problems.append(f"heal records say seqs {lo}-{hi} were added, but they are missing")
    for path in scope.quarantine_files:
        _read(path, QUARANTINE_SCHEMA, report)
    _check_decoded_files(layout, scope.decoded_files, report)
    _compare_gaps(present, subtract(gaps, healed), report, scope.window)
    if days is not None and not scope.segments:
        report.notes.append("the days asked for have no raw segments")
    if report.unchecksummed:
        report.notes.append(
            f"{report.unchecksummed} files have no page checksums (an older replica wrote "
            "them): damage inside them is found only where it breaks decompression or decoding"
        )
    if scope.superseded:
        report.notes.append(
            f"{len(scope.superseded)} segments lie inside a larger one, which readers read "
            "instead: a compaction's inputs not deleted yet; 'replica compact' deletes them"
        )
    if scope.temporaries:
        report.notes.append("temporary files present: a write is in progress or was interrupted")
    if any(layout.spool_dir.glob("*.wal")):
        report.notes.append(
            "spool files present: a recorder is running, or the next one will "
            "recover them into segments"
        )
    return report


def _read(path: Path, schema: pa.Schema, report: Report) -> pa.Table | None:
    """The whole (small: gap or quarantine) file, if it reads, its page checksums match and it
    has ``schema``; otherwise None, with the problem noted."""
    try:
        with parquet_file(path, page_checksum_verification=True) as parquet:
            table = parquet.read()
            if not has_page_checksums(path, parquet.metadata):
                report.unchecksummed += 1
    except Exception as exc:
        report.problems.append(f"{path}: does not read: {exc}")
        return None
    if not table.schema.remove_metadata().equals(schema.remove_metadata()):
        report.problems.append(
            f"{path}: schema is [{describe(table.schema)}], expected [{describe(schema)}]"
        )
        return None
    return table


def _block_order(layout: ArchiveLayout, scope: Scope, report: Report) -> OrderCheck | None:
    """A check of block order for a node archive, None for a feed one."""
    try:
        kind = recorded_kind(layout, scope.segments)
    except UsageError as mixed:
        report.problems.append(str(mixed))
        return None
    return OrderCheck() if kind == NODE else None


def _segment_checks(
    scope: Scope, report: Report, order: OrderCheck | None, cluster: Cluster | None
) -> Iterator[SegmentCheck | None]:
    """``check_segment`` of each raw file of the scope, in order: here, or all on ``cluster``
    first, then added to ``report`` in the same order."""
    if cluster is None:
        for segment in scope.segments:
            yield check_segment(segment, report, order)
        return
    node = order is not None
    tasks = [
        (task_path(s.path), s.first_seq, s.last_seq, node, task_endpoint(s.path))
        for s in scope.segments
    ]
    results: list[SegmentResult | None] = [None] * len(tasks)
    for index, result, _ in run_tasks(cluster, check_segment_task, tasks, ()):
        results[index] = result
    for segment, result in zip(scope.segments, results, strict=True):
        assert result is not None
        yield result.add_to(segment, report, order)


def _check_segments(
    scope: Scope,
    report: Report,
    relist: bool,
    order: OrderCheck | None,
    cluster: Cluster | None,
) -> Ranges:
    """Check each raw file of the scope; returns the seq ranges it holds, with those of its
    seams (by their names). With ``relist``, a segment gone since the listing raises
    ``_SegmentVanished`` rather than being a problem."""
    present: Ranges = []
    checks = _segment_checks(scope, report, order, cluster)
    for segment, check in zip(scope.segments, checks, strict=True):
        if check is None:
            if relist and not segment.path.exists():
                raise _SegmentVanished(segment.path)
            continue
        report.segments += 1
        report.rows += check.rows
        if not check.rows or not check.sorted:
            continue
        if present and check.runs[0][0] <= present[-1][1]:
            report.problems.append(
                f"{segment.path}: seqs {check.first}-{check.last} overlap another segment"
            )
            continue
        present += check.runs
    if present:
        report.first_seq, report.last_seq = present[0][0], present[-1][1]
    firsts = [segment.first_seq for segment in scope.segments]
    for seam in scope.seams:
        # Our segments are sorted by first seq and disjoint (or a problem already): if the seam
        # overlaps any, it overlaps the last one starting before its own end.
        at = bisect_right(firsts, seam.last_seq)
        ours = scope.segments[at - 1] if at else None
        if ours is not None and seam.first_seq <= ours.last_seq:
            report.problems.append(
                f"{seam.path}: seqs {seam.first_seq}-{seam.last_seq} overlap "
                f"{ours.path.name} of the days checked"
            )
    return union(present + [(s.first_seq, s.last_seq) for s in scope.seams])


def _check_superseded(segments: list[Segment], report: Report) -> None:
    """Each file a larger segment supersedes is no overlap (readers skip it), but still checked
    like any segment: a damaged one, or one not holding what its name says, is a problem. One
    gone meanwhile was deleted by the compaction that superseded it."""
    for segment in segments:
        found = Report()
        check_segment(segment, found)
        if found.problems and not segment.path.exists():
            continue
        report.problems += found.problems
        report.unchecksummed += found.unchecksummed


def _read_heal_files(paths: list[Path], report: Report) -> Ranges:
    """The healed ranges the heal records at ``paths`` give, sorted."""
    healed: Ranges = []
    for path in paths:
        table = _read(path, HEAL_SCHEMA, report)
        if table is not None:
            columns = table.column("from_seq").to_pylist(), table.column("to_seq").to_pylist()
            healed += zip(*columns, strict=True)
    healed.sort()
    return healed


def _within(ranges: Ranges, window: tuple[int, int] | None) -> Ranges:
    """The parts of ``ranges`` inside ``window`` (all of them for None)."""
    if window is None:
        return ranges
    low, high = window
    return [(max(lo, low), min(hi, high)) for lo, hi in ranges if low <= hi and lo <= high]


def _check_gap_files(paths: list[Path], report: Report) -> Ranges:
    gaps: Ranges = []
    for path in paths:
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


def _check_decoded_files(layout: ArchiveLayout, paths: list[Path], report: Report) -> None:
    """Read each decoded file, a row group at a time, against its page checksums. A file gone
    since the listing was replaced or dropped by a decode or a compaction: not a problem."""
    for path in paths:
        try:
            with parquet_file(path, page_checksum_verification=True) as parquet:
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


def _compare_gaps(
    present: Ranges, gaps: Ranges, report: Report, window: tuple[int, int] | None
) -> None:
    """Holes against gap records. Checking some days (``window``: the seqs they answer for),
    only holes and records within it count: the gap files read hold other days' too."""
    first, last = (present[0][0], present[-1][1]) if present else (0, -1)
    missing = holes(present)
    if window is not None:
        low, high = window
        gaps = [(lo, hi) for lo, hi in gaps if low <= hi and lo <= high]
        missing = [(max(lo, low), min(hi, high)) for lo, hi in missing if low <= hi and lo <= high]
        report.gap_records = len(gaps)
    report.missing = sum(span(lo, hi) for lo, hi in missing)
    for lo, hi in subtract(missing, gaps):
        report.problems.append(f"seqs {lo}-{hi} are missing and no gap record says so")
    for lo, hi in subtract(gaps, missing):
        if first <= lo and hi <= last:
            # An import filled a hole after it was recorded: gap records are never rewritten.
            report.notes.append(f"seqs {lo}-{hi} were backfilled after their gap was recorded")
        elif window is None:
            report.problems.append(
                f"gap records say seqs {lo}-{hi} are missing, but they lie outside the "
                f"archive's range {first}-{last}"
            )
