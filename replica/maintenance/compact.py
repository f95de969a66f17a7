"""``replica compact``: each closed day's small raw segments merged into few large ones.

For each day, the raw side (``compact_raw``) says what merges, the decoded side
(``decoder.compact``) whether the merged inputs' decoded tables merge too or are dropped for
``replica decode`` to redo, and ``staging`` builds the day's new directories aside and swaps
them in, so that readers never see half a day. It runs beside a recording recorder, but
takes turns with ``replica decode`` (``schemas.lock.maintenance_lock``), and first finishes
whatever a killed run left.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from dataclasses import dataclass, field

from replica.decoder.compact import plan_decoded
from replica.maintenance.compact_marks import is_done, mark_done
from replica.maintenance.compact_raw import (
    day_dir,
    plan_merges,
    spooled_days,
    why_open,
    write_merged_segment,
)
from replica.maintenance.days import raw_days
from replica.maintenance.staging import DayStaging, finish_interrupted
from replica.schemas.archive import ArchiveLayout, Segment, day_partition
from replica.schemas.decoded import DECODED_DIR
from replica.schemas.errors import UsageError
from replica.schemas.lock import maintenance_lock
from replica.schemas.storepath import StorePath


@dataclass
class DaySummary:
    day: dt.date
    segments_in: int = 0  # segments merged
    segments_out: int = 0  # segments they became
    bytes_in: int = 0
    bytes_out: int = 0
    decoded_merged: int = 0  # merged segments whose inputs' decoded tables were merged too
    decoded_dropped: int = 0  # ... whose inputs' decoded files were dropped, to decode again

    def describe(self) -> str:
        if not self.segments_in:
            return f"{self.day}: nothing to merge"
        line = (
            f"{self.day}: {self.segments_in} segments merged into {self.segments_out}, "
            f"{_mb(self.bytes_in)} -> {_mb(self.bytes_out)}"
        )
        if self.decoded_merged:
            line += f"; decoded tables merged for {self.decoded_merged}"
        if self.decoded_dropped:
            line += (
                f"; decoded tables dropped for {self.decoded_dropped}: "
                "'replica decode' decodes them again"
            )
        return line


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@dataclass
class CompactSummary:
    finished: list[str] = field(default_factory=list)  # days a killed run left, now finished
    days: list[DaySummary] = field(default_factory=list)  # days compacted (or asked for)
    skipped: dict[dt.date, str] = field(default_factory=dict)  # open days, and why

    def lines(self) -> list[str]:
        lines = [f"finished the interrupted compaction of {day}" for day in self.finished]
        lines += [day.describe() for day in self.days]
        lines += [f"{day}: not compacted: {why}" for day, why in self.skipped.items()]
        if not self.days and not self.finished:
            lines.insert(0, "nothing to compact")
        return lines


def compact(
    root: str | os.PathLike[str], date: dt.date | None = None, now: dt.datetime | None = None
) -> CompactSummary:
    """Compact every closed day of the archive at ``root`` (a directory, or ``s3://...``: see
    ``compact_store``) that has segments to merge, or only ``date``, which must be closed
    (UsageError otherwise). Days are closed relative to ``now``
    (an aware datetime; the current time if not given)."""
    layout = ArchiveLayout.open(root)
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise UsageError(f"now {now.isoformat()} has no time zone; give a UTC time")
    if isinstance(layout.root, StorePath):
        from replica.maintenance.compact_store import compact_store

        return compact_store(layout, date, now)
    with maintenance_lock(layout, "replica compact"):
        summary = CompactSummary(finished=finish_interrupted(layout))
        spooled = spooled_days(layout)
        days = raw_days(layout)
        for day in days if date is None else [date]:
            reason = why_open(day, now, spooled)
            if reason is not None and date is not None:
                raise UsageError(f"{day} cannot be compacted yet: {reason}")
            if reason is not None:
                summary.skipped[day] = reason
                continue
            done = compact_day(layout, day, days)
            if done.segments_in or date is not None:
                summary.days.append(done)
        return summary


def compact_day(layout: ArchiveLayout, day: dt.date, days: list[dt.date]) -> DaySummary:
    """Compact a closed ``day`` (``days``: every raw day) unless its mark says it is done
    already, and mark it done."""
    if is_done(layout, day):
        return DaySummary(day)
    try:
        staged = stage_day(layout, day, days)
    except BaseException:  # a damaged input: what was built aside goes, nothing live changed
        shutil.rmtree(layout.compact_dir / day_partition(day), ignore_errors=True)
        with contextlib.suppress(OSError):
            layout.compact_dir.rmdir()
        raise
    summary = DaySummary(day)
    if staged is not None:
        staging, summary = staged
        staging.commit()
    mark_done(layout, day)
    return summary


def stage_day(
    layout: ArchiveLayout, day: dt.date, days: list[dt.date] | None = None
) -> tuple[DayStaging, DaySummary] | None:
    """Build ``day``'s new directories aside (nothing a reader sees changes yet); None when
    it has nothing to merge. ``days``: every raw day, listed once by a caller doing many."""
    groups = plan_merges(layout, day, raw_days(layout) if days is None else days)
    if not groups:
        return None
    partition = day_partition(day)
    staging = DayStaging(layout, partition)
    summary = DaySummary(day)
    retired = {f"{g.hour_dir.name}/{s.path.name}" for g in groups for s in g.inputs}
    raw = staging.stage(day_dir(layout, day), "raw", retired)
    merges = []
    for group in groups:
        path = raw / group.hour_dir.name / group.name
        write_merged_segment(group, path)
        first, last = group.inputs[0].first_seq, group.inputs[-1].last_seq
        merges.append((Segment(path, first, last), group.inputs))
        summary.segments_in += len(group.inputs)
        summary.bytes_in += sum(s.path.stat().st_size for s in group.inputs)
        summary.bytes_out += path.stat().st_size
    summary.segments_out = len(groups)
    decoded = plan_decoded(layout.root, partition, merges)
    staged = {
        table: staging.stage(
            layout.root / DECODED_DIR / table / partition, f"decoded/{table}", names
        )
        for table, names in decoded.retired.items()
    }
    decoded.write(staged)
    held = set().union(*decoded.retired.values())
    for merge, (_, inputs) in zip(decoded.merges, merges, strict=True):
        if merge.version is not None:
            summary.decoded_merged += 1
        elif any(s.path.name in held for s in inputs):
            summary.decoded_dropped += 1
    return staging, summary
