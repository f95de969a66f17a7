"""Writing what a heal adds to one day of a local archive: the day's raw directory rebuilt aside
and swapped in with its heal records, exactly as compaction swaps a day (``staging``).

The rows are placed by ``heal_plan``: an existing segment that gains seqs is rewritten whole under
the same name, the rest become new segments. Nothing is written where a reader looks until the
swap: a reader sees the day before or after, each seq once. A kill before the journal leaves a
build the next run throws away; after it, swaps the next run finishes
(``staging.finish_interrupted``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa

from replica.maintenance.heal_gaps import gap_table, hole_rows
from replica.maintenance.heal_plan import heal_table, merged, plan_day, write_file
from replica.maintenance.staging import DayStaging
from replica.schemas.archive import ArchiveLayout, Segment, day_partition
from replica.schemas.heals import heals_dir


@dataclass
class DayResult:
    added: int = 0
    written: int = 0  # new segments
    rewritten: int = 0  # existing segments rewritten with seqs added inside
    gaps: int = 0  # gap records for holes left just before the day's seqs
    warnings: list[str] = field(default_factory=list)


def write_day(
    layout: ArchiveLayout,
    day: date,
    added: pa.Table,
    segments: list[Segment],
    metadata: dict[bytes, bytes],
    source: str,
    may_record: Callable[[int, int], bool],
) -> DayResult:
    """Add ``added`` (raw rows of ``day``, sorted by seq, none the archive holds) to the
    archive whose segments are ``segments``, recording them as healed from ``source``, and
    the holes left just before the day's seqs as gaps (where ``may_record``, see
    ``heal_gaps``)."""
    plan = plan_day(added, segments, metadata)
    result = DayResult(warnings=plan.warnings)
    if not plan.rewrites and not plan.new:
        return result
    partition = day_partition(day)
    live_raw = layout.raw_dir / partition
    live_heals = heals_dir(layout) / partition
    for live in (live_raw, live_heals):
        live.mkdir(parents=True, exist_ok=True)  # an exchange needs both directories
    staging = DayStaging(layout, partition)
    raw = staging.stage(live_raw, "raw", {_relative(segment) for segment in plan.rewrites})
    new_segments = []
    for segment, rows in plan.rewrites.items():
        write_file(merged(segment, rows), raw / _relative(segment))
        result.rewritten += 1
    for relative, rows in plan.new:
        path = raw / relative
        write_file(rows, path)
        new_segments.append(
            Segment(path, rows.column("seq")[0].as_py(), rows.column("seq")[-1].as_py())
        )
        result.written += 1
    result.added = len(plan.healed)
    heals = staging.stage(live_heals, "heals", set())
    stamp = time.time_ns() // 1000
    unit = f"heal-{stamp}-{os.getpid()}.parquet"
    write_file(heal_table(plan.healed, source, stamp), heals / unit)
    would_be = sorted(
        [_staged(segment, live_raw, raw) for segment in segments] + new_segments,
        key=lambda segment: segment.first_seq,
    )
    holes = hole_rows(layout, would_be, may_record, lambda s: s.path.is_relative_to(raw))
    result.gaps = len(holes)
    if holes:
        live_gaps = layout.gaps_dir / partition
        live_gaps.mkdir(parents=True, exist_ok=True)
        write_file(gap_table(holes), staging.stage(live_gaps, "gaps", set()) / unit)
    staging.commit()
    return result


def _staged(segment: Segment, live_raw: Path, raw: Path) -> Segment:
    """The segment as it will be once the day is swapped in: those of the day are in ``raw``."""
    if segment.path.parent.parent != live_raw:
        return segment
    return Segment(raw / _relative(segment), segment.first_seq, segment.last_seq)


def _relative(segment: Segment) -> str:
    return f"{segment.path.parent.name}/{segment.path.name}"
