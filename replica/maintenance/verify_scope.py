"""What ``verify`` reads: the whole archive, or some days of it and their seams.

The nightly check is of yesterday, not of the year: with days given, only those days' files are
read, plus the names of the segments just outside them (in the nearest days with segments) and
the gap records dated between those neighbours, so that seqs missing across midnight, and
segments overlapping across it, are still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from replica.maintenance.days import raw_days, segments_after, segments_before
from replica.schemas.archive import DATE_FILES, ArchiveLayout, Segment, day_partition, partition_day
from replica.schemas.decoded import DECODED_DIR
from replica.schemas.files import TEMPORARY_GLOB
from replica.schemas.heals import heals_dir


@dataclass(frozen=True)
class Scope:
    whole: bool  # the whole archive, or the days asked for
    segments: list[Segment]  # read in full
    seams: list[Segment]  # of neighbouring days, known by name: the seqs around ours
    gap_files: list[Path]
    heal_files: list[Path]
    quarantine_files: list[Path]
    decoded_files: list[Path]
    stray: list[Path]  # Parquet files under raw/ not named like segments
    temporaries: list[Path]  # of writes in progress or interrupted
    superseded: list[Segment]  # inside a larger segment: a compaction's inputs not yet deleted

    @property
    def window(self) -> tuple[int, int] | None:
        """The seqs the days checked answer for: theirs, and the holes to their seams (None
        for the whole archive, or no segments)."""
        if self.whole or not self.segments:
            return None
        first, last = self.segments[0].first_seq, max(s.last_seq for s in self.segments)
        below = [s.last_seq for s in self.seams if s.first_seq < first]
        above = [s.first_seq for s in self.seams if s.last_seq > last]
        return (max(below) + 1 if below else first, min(above) - 1 if above else last)


def whole_archive(layout: ArchiveLayout) -> Scope:
    segments, superseded = layout.listing()
    return Scope(
        True,
        segments,
        [],
        layout.table_files(layout.gaps_dir),
        layout.table_files(heals_dir(layout)),
        layout.table_files(layout.quarantine_dir),
        sorted(layout.root.glob(f"{DECODED_DIR}/*/{DATE_FILES}")),
        layout.stray_raw_files(),
        layout.temporary_files(),
        superseded,
    )


def some_days(layout: ArchiveLayout, days: list[date]) -> Scope:
    """``days`` (sorted) and their seams with the days around them."""
    segments, stray, superseded = [], [], []
    for day in days:
        own, left_out = layout.listing(day)
        named = {segment.path for segment in own + left_out}
        segments += own
        superseded += left_out
        stray += [p for p in (layout.raw_dir / day_partition(day)).rglob("*.parquet")
                  if p not in named]  # fmt: skip
    segments.sort(key=lambda s: (s.first_seq, s.last_seq))
    if not days:
        return Scope(False, [], [], [], [], [], [], [], [], [])
    every = raw_days(layout)
    before = segments_before(layout, days[0], every)
    after = segments_after(layout, days[-1], every)
    seams = _seams(segments, before + after)
    low = before[0].day if before and before[0].day else days[0] - timedelta(days=1)
    high = after[0].day if after and after[0].day else days[-1] + timedelta(days=1)
    partitions = [day_partition(day) for day in days]
    quarantine = [sorted((layout.quarantine_dir / part).glob("*.parquet")) for part in partitions]
    decoded = [
        sorted((layout.root / DECODED_DIR).glob(f"*/{part}/*.parquet")) for part in partitions
    ]
    return Scope(
        False,
        segments,
        seams,
        _dated_files(layout.gaps_dir, low, high),
        _dated_files(heals_dir(layout), low, high),
        [path for paths in quarantine for path in paths],
        [path for paths in decoded for path in paths],
        sorted(stray),
        [
            path
            for table_dir in (layout.raw_dir, layout.gaps_dir, layout.quarantine_dir)
            for part in partitions
            for path in (table_dir / part).glob(TEMPORARY_GLOB)
        ],
        superseded,
    )


def _seams(ours: list[Segment], neighbours: list[Segment]) -> list[Segment]:
    """The neighbours' segments from the last one before ours in seq order to the first one
    after (those between interleave with ours: ts_ms may go back across midnight)."""
    if not ours:
        return []
    neighbours = sorted(neighbours, key=lambda s: (s.first_seq, s.last_seq))
    first, last = ours[0].first_seq, ours[-1].last_seq
    below = [s for s in neighbours if s.first_seq < first]
    above = [s for s in neighbours if s.last_seq > last]
    low = below[-1].first_seq if below else first
    high = above[0].last_seq if above else last
    return [s for s in neighbours if low <= s.first_seq and s.last_seq <= high]


def _dated_files(table_dir: Path, low: date, high: date) -> list[Path]:
    """The files of a date-partitioned table dated from ``low`` to ``high``."""
    files: list[Path] = []
    if table_dir.is_dir():
        for path in sorted(table_dir.iterdir()):
            day = partition_day(path.name)
            if day is not None and low <= day <= high:
                files += sorted(path.glob("*.parquet"))
    return files
