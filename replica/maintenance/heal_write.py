"""Writing what a heal adds to one day: the day's raw directory rebuilt aside and swapped in
with its heal records, exactly as compaction swaps a day (``staging``).

Seqs inside an existing segment's name range go into that segment, rewritten whole under the
same name (segment names never overlap, so they can go nowhere else); the rest become new
segments, one per run that stays in one UTC hour and between the same two existing segments.
Nothing is written where a reader looks until the swap: a reader sees the day before or after,
each seq once. A kill before the journal leaves a build the next run throws away; after it,
swaps the next run finishes (``staging.finish_interrupted``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replica.maintenance.compact_raw import TARGET_ROWS
from replica.maintenance.heal_gaps import gap_table, hole_rows
from replica.maintenance.staging import DayStaging
from replica.schemas.archive import (
    MS_PER_HOUR,
    RAW_SCHEMA,
    SEQ_DIGITS,
    ArchiveLayout,
    Segment,
    hour_of,
    hour_partition,
    raw_write_options,
)
from replica.schemas.files import PAGE_CHECKSUMS
from replica.schemas.heals import HEAL_SCHEMA, heals_dir


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
    result = DayResult()
    seqs = added.column("seq").to_numpy()
    firsts = np.array([s.first_seq for s in segments], dtype=np.int64)
    index = np.searchsorted(firsts, seqs, side="right") - 1  # the segment at or before each
    inside: dict[int, list[int]] = {}
    outside = []
    for position, seq in enumerate(seqs.tolist()):
        at = int(index[position])
        if at >= 0 and segments[at].last_seq >= seq:
            inside.setdefault(at, []).append(position)
        else:
            outside.append(position)
    rewrites = {}
    hours = added.column("ts_ms").to_numpy() // MS_PER_HOUR
    for at, positions in inside.items():
        hour = _partition_hour(segments[at])
        fits = [p for p in positions if hours[p] == hour]
        if len(fits) < len(positions):
            result.warnings.append(
                f"{len(positions) - len(fits)} seqs inside {segments[at].path} have times "
                "outside its hour; not healed (a segment is only rewritten within its hour)"
            )
        if fits:
            rewrites[segments[at]] = fits
    if not rewrites and not outside:
        return result
    partition = f"date={day.isoformat()}"
    live_raw = layout.raw_dir / partition
    live_heals = heals_dir(layout) / partition
    for live in (live_raw, live_heals):
        live.mkdir(parents=True, exist_ok=True)  # an exchange needs both directories
    staging = DayStaging(layout, partition)
    raw = staging.stage(live_raw, "raw", {_relative(segment) for segment in rewrites})
    kept: list[int] = []
    new_segments = []
    for segment, fits in rewrites.items():
        _rewrite(segment, added.take(fits), raw / _relative(segment))
        result.rewritten += 1
        kept += fits
    for run in _runs(added, outside, index):
        rows = added.take(run)
        first, last = rows.column("seq")[0].as_py(), rows.column("seq")[-1].as_py()
        name = f"{first:0{SEQ_DIGITS}d}-{last:0{SEQ_DIGITS}d}.parquet"
        path = raw / _hour_dir(added, run[0]) / name
        _write(rows.replace_schema_metadata(metadata), path)
        new_segments.append(Segment(path, first, last))
        result.written += 1
        kept += run
    healed = np.sort(seqs[kept])
    result.added = len(healed)
    heals = staging.stage(live_heals, "heals", set())
    stamp = time.time_ns() // 1000
    unit = f"heal-{stamp}-{os.getpid()}.parquet"
    _write(_heal_table(healed, source, stamp), heals / unit)
    would_be = sorted(
        [_staged(segment, live_raw, raw) for segment in segments] + new_segments,
        key=lambda segment: segment.first_seq,
    )
    holes = hole_rows(layout, would_be, may_record, lambda s: s.path.is_relative_to(raw))
    result.gaps = len(holes)
    if holes:
        live_gaps = layout.gaps_dir / partition
        live_gaps.mkdir(parents=True, exist_ok=True)
        _write(gap_table(holes), staging.stage(live_gaps, "gaps", set()) / unit)
    staging.commit()
    return result


def _staged(segment: Segment, live_raw: Path, raw: Path) -> Segment:
    """The segment as it will be once the day is swapped in: those of the day are in ``raw``."""
    if segment.path.parent.parent != live_raw:
        return segment
    return Segment(raw / _relative(segment), segment.first_seq, segment.last_seq)


def _partition_hour(segment: Segment) -> int:
    """The UTC hour (from the epoch) of the partition the segment is in: the only hour whose
    commands it may hold."""
    hour_dir = segment.path.parent
    moment = datetime.strptime(f"{hour_dir.parent.name} {hour_dir.name}", "date=%Y-%m-%d hour=%H")
    return int(moment.replace(tzinfo=UTC).timestamp()) // 3600


def _relative(segment: Segment) -> str:
    return f"{segment.path.parent.name}/{segment.path.name}"


def _hour_dir(rows: pa.Table, position: int) -> str:
    return hour_partition(hour_of(rows.column("ts_ms")[position].as_py()))[1]


def _runs(added: pa.Table, positions: list[int], index: np.ndarray) -> list[list[int]]:
    """``positions`` cut into new segments: a run ends at an hour boundary, where an existing
    segment lies between two seqs (their segment-at-or-before differs), or at TARGET_ROWS."""
    runs: list[list[int]] = []
    hours = added.column("ts_ms").to_numpy() // MS_PER_HOUR
    for position in positions:
        if runs:
            last = runs[-1][-1]
            same = hours[last] == hours[position] and index[last] == index[position]
            if same and len(runs[-1]) < TARGET_ROWS:
                runs[-1].append(position)
                continue
        runs.append([position])
    return runs


def _rewrite(segment: Segment, rows: pa.Table, path: Path) -> None:
    """The segment's rows and ``rows`` in seq order, with the segment's own metadata."""
    old = pq.read_table(segment.path)
    merged = pa.concat_tables([old.cast(RAW_SCHEMA), rows]).sort_by("seq")
    _write(merged.replace_schema_metadata(old.schema.metadata), path)


def _write(table: pa.Table, path: Path) -> None:
    """A new file in a staged directory: fsynced, since the journal will vouch for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = raw_write_options(table) if table.schema.names == RAW_SCHEMA.names else {}
    with open(path, "xb") as sink:
        pq.write_table(table, sink, **({"compression": "zstd"} | options), **PAGE_CHECKSUMS)
        sink.flush()
        os.fsync(sink.fileno())


def _heal_table(healed: np.ndarray, source: str, stamp: int) -> pa.Table:
    """One record per run of consecutive healed seqs."""
    breaks = np.flatnonzero(np.diff(healed) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(healed)]]) - 1
    first, last = healed[starts], healed[ends]
    return pa.Table.from_pydict(
        {
            "from_seq": first,
            "to_seq": last,
            "healed": last - first + 1,
            "source": [source] * len(first),
            "healed_ts_us": [stamp] * len(first),
        },
        schema=HEAL_SCHEMA,
    )
