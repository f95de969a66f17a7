"""``replica compact`` on an object store, which has no rename and no directory swap.

The day's merge groups are planned as on disk (``compact_raw``), but published by the rule
readers follow on every archive (``ArchiveLayout.segments``): a segment inside a larger one of
its hour is superseded. Each merged segment is built in a local scratch file, uploaded to its
final key (visible only once the upload completes, see ``schemas.transfer``), and only then are
its inputs deleted. A run killed at any point leaves the inputs alone, or the merged segment with
some of its inputs, which readers see as each seq once; the next run deletes those inputs first.

The inputs' decoded files are deleted with them, before each input: the merged segment is
decoded by the next ``replica decode``, as a new segment is (merging decoded tables, as on disk,
is not done on a store).

There is no maintenance lock on a store (a lock object would outlive a killed run and need a
lease): running one maintenance process per prefix at a time is the operator's job. Two at once
lose nothing: merged segments are the same bytes from the same inputs, and the slower run fails
reading an input the other deleted.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from replica.maintenance.compact import CompactSummary, DaySummary
from replica.maintenance.compact_raw import plan_merges, why_open, write_merged_segment
from replica.maintenance.days import raw_days
from replica.schemas.archive import ArchiveLayout, Segment
from replica.schemas.decoded import DECODED_DIR
from replica.schemas.errors import UsageError
from replica.schemas.storage import Location
from replica.schemas.storepath import StorePath
from replica.schemas.transfer import SealedFile, copy_with_retries


def compact_store(layout: ArchiveLayout, date: dt.date | None, now: dt.datetime) -> CompactSummary:
    """``compact`` for an archive whose root is a ``StorePath``. A recorder writing to a store
    spools on its own disk, where this cannot look: a day is closed by the clock alone."""
    summary = CompactSummary()
    days = raw_days(layout)
    for day in days if date is None else [date]:
        reason = why_open(day, now, {})
        if reason is not None and date is not None:
            raise UsageError(f"{day} cannot be compacted yet: {reason}")
        if reason is not None:
            summary.skipped[day] = reason
            continue
        if retire_superseded(layout, day):
            summary.finished.append(day.isoformat())
        done = _compact_day(layout, day, days)
        if done.segments_in or date is not None:
            summary.days.append(done)
    return summary


def _compact_day(layout: ArchiveLayout, day: dt.date, days: list[dt.date]) -> DaySummary:
    summary = DaySummary(day)
    groups = plan_merges(layout, day, days)
    with tempfile.TemporaryDirectory(prefix="replica-compact-") as scratch:
        local = Location(pafs.LocalFileSystem(), scratch, scratch)
        for group in groups:
            built = Path(scratch) / group.name
            write_merged_segment(group, built)
            size = built.stat().st_size
            copy_with_retries(local, _hour(group.hour_dir), SealedFile(group.name, size))
            built.unlink()
            summary.segments_in += len(group.inputs)
            summary.segments_out += 1
            summary.bytes_in += sum(s.path.stat().st_size for s in group.inputs)
            summary.bytes_out += size
            for segment in group.inputs:
                retire_segment(layout, segment)
    return summary


def _hour(hour_dir: Path) -> Location:
    """An hour directory of the store as a location, the merged segment's name relative to it."""
    assert isinstance(hour_dir, StorePath)
    return Location(hour_dir.location.filesystem, hour_dir.key, str(hour_dir))


def retire_superseded(layout: ArchiveLayout, day: dt.date | None) -> bool:
    """Delete what a killed run left: segments inside a larger one (a compaction's inputs, a
    heal's unpublished pieces), of ``day`` or of every day. Whether there were any."""
    superseded = layout.listing(day)[1]
    for segment in superseded:
        retire_segment(layout, segment)
    return bool(superseded)


def retire_segment(layout: ArchiveLayout, segment: Segment) -> None:
    """Delete a superseded segment (a merged input, a segment a heal split): its decoded files
    first, then the raw object, which is what says (to the next run) that it still has to go."""
    decoded = layout.root / DECODED_DIR
    date_dir, _ = segment.partition
    for table in decoded.iterdir() if decoded.is_dir() else []:
        (table / date_dir / segment.path.name).unlink(missing_ok=True)
    segment.path.unlink(missing_ok=True)
