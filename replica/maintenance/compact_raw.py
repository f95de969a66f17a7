"""The raw side of compaction: which days are closed, and which segments merge into which.

The recorder seals a segment every minute or so, which makes a day of many small files: DuckDB
and replays pay per file and per row group. Once a day is over and nothing can still be written
into it, the segments of each hour that follow each other in seq order are merged into segments
of up to ``TARGET_ROWS`` rows. Merged segments stay in their hour's partition and are named by
their own seqs like any other, so nothing downstream can tell them apart from sealed ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa

from replica.maintenance.days import segments_after, segments_before
from replica.recorder.spool import leftover_spools, read_spool, spooled_commands
from replica.schemas.archive import (
    RAW_ROW_GROUP_ROWS,
    RAW_SCHEMA,
    RAW_WRITE_OPTIONS,
    ArchiveLayout,
    Segment,
    day_of,
    day_partition,
    raw_batch_rows,
    segment_name,
)
from replica.schemas.concat import concatenate
from replica.schemas.errors import ArchiveError
from replica.schemas.storepath import read_metadata, read_schema

# Eight row groups: large enough that DuckDB's per-file costs vanish and its threads each get a
# row group, small enough that one file stays a few hundred MB at most.
TARGET_ROWS = 8 * RAW_ROW_GROUP_ROWS
# A command reaches the recorder up to the feed's lag after its ts_ms, so the last hour of a day
# can still gain segments for a while after midnight; this leaves them the time.
CLOSE_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class MergeGroup:
    """Consecutive segments of one hour that become the one segment ``name``."""

    inputs: tuple[Segment, ...]

    @property
    def name(self) -> str:
        return segment_name(self.inputs[0].first_seq, self.inputs[-1].last_seq)

    @property
    def hour_dir(self) -> Path:
        return self.inputs[0].path.parent


def day_dir(layout: ArchiveLayout, day: date) -> Path:
    return layout.raw_dir / day_partition(day)


def spooled_days(layout: ArchiveLayout) -> dict[date, str]:
    """Days that a spool file holds commands of, each with one such file's name: a recorder,
    running or the next to start, will publish those commands into that day."""
    days: dict[date, str] = {}
    for path in leftover_spools(layout.spool_dir):
        try:
            records = read_spool(path).records
        except FileNotFoundError:
            continue  # its unit was published and the spool removed meanwhile
        for command in spooled_commands(records):
            days.setdefault(day_of(command.ts_ms), path.name)
    return days


def why_open(day: date, now: datetime, spooled: dict[date, str]) -> str | None:
    """Why ``day`` may still gain segments at ``now``, or None when it is closed."""
    closes = datetime.combine(day + timedelta(days=1), time(), UTC) + CLOSE_GRACE
    if now < closes:
        return (
            f"it is open until {closes:%Y-%m-%d %H:%M} UTC, {CLOSE_GRACE.seconds // 60} minutes "
            "after it ends, for commands the feed delivers late"
        )
    if day in spooled:
        return (
            f"spool/{spooled[day]} holds commands of it, which a recorder will still publish "
            "into it; let the recorder run (or start it once to recover the spool)"
        )
    return None


def plan_merges(layout: ArchiveLayout, day: date, days: list[date]) -> list[MergeGroup]:
    """The groups of ``day``'s segments to merge: runs of segments of one hour that follow each
    other in seq order, taken while their rows fit ``TARGET_ROWS``. A segment left alone in its
    group is as large as it will get and is not rewritten, which makes a second compaction of a
    day do nothing.

    Only neighbours in the whole archive's seq order merge: ts_ms may go back across an hour,
    which puts seqs 1 and 3 in one hour and seq 2 in the next, and merging 1 with 3 would make
    a segment whose seq range overlaps seq 2's. Those neighbours are in the day itself or in
    the nearest days with segments on either side (``days``: every raw day), so only those
    three days are listed."""
    own = layout.segments(day)
    if len(own) < 2:
        return []
    nearby = segments_before(layout, day, days) + own + segments_after(layout, day, days)
    nearby.sort(key=lambda s: (s.first_seq, s.last_seq))
    runs: list[list[Segment]] = []
    previous: Path | None = None  # the hour directory of the segment before, on any day
    for segment in nearby:
        hour = segment.path.parent
        if segment.day == day:
            if hour != previous:
                runs.append([])
            runs[-1].append(segment)
        previous = hour
    groups = []
    for run in runs:
        group: list[Segment] = []
        rows = 0
        for segment in run:
            count = _rows_of(segment)
            if group and rows + count > TARGET_ROWS:
                groups.append(group)
                group, rows = [], 0
            group.append(segment)
            rows += count
        groups.append(group)
    return [MergeGroup(tuple(group)) for group in groups if len(group) > 1]


def _rows_of(segment: Segment) -> int:
    try:
        return int(read_metadata(segment.path).num_rows)
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(
            f"cannot read segment {segment.path}: {str(exc).rstrip('.')}; "
            "run 'replica verify' on the archive"
        ) from None


def write_merged_segment(group: MergeGroup, path: Path) -> None:
    """The group's rows, in seq order, as one new segment at ``path``, written like the
    recorder's, with the first input's schema metadata (the recorder's version and feed)."""
    metadata = read_schema(group.inputs[0].path).metadata
    options = {k: v for k, v in RAW_WRITE_OPTIONS.items() if k != "row_group_size"}
    sources = [segment.path for segment in group.inputs]
    # Row groups as small as the inputs' smallest bound in bytes (``raw_row_group_rows``).
    rows = min(raw_batch_rows(read_metadata(source)) for source in sources)
    concatenate(sources, path, RAW_SCHEMA.with_metadata(metadata), rows, **options)
