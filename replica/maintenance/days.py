"""Choosing days of an archive, and the segments just outside them.

Nightly maintenance works on one day, and must cost the same on an archive of a month and of
years: so it lists that day's directory and its neighbours', never the whole ``raw/`` tree. Seqs
follow ts_ms closely (the feed lags by minutes), so the segments that come right before and after
a day in seq order, and any that interleave with its own, are in the nearest days that have
segments: listing those two days whole is enough to know a day's seams.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date

from replica.schemas.archive import ArchiveLayout, Segment, partition_day
from replica.schemas.errors import UsageError


def raw_days(layout: ArchiveLayout) -> list[date]:
    """Every day with a raw partition, in order (one listing of ``raw/``, not of its files)."""
    days = []
    if layout.raw_dir.is_dir():
        for path in layout.raw_dir.iterdir():
            day = partition_day(path.name)
            if day is not None:  # otherwise not a partition of ours; verify names it
                days.append(day)
    return sorted(days)


def selected_days(layout: ArchiveLayout, day: date | None, since: date | None) -> list[date] | None:
    """The raw days ``--date`` or ``--since`` select (None for the whole archive, when neither
    is given)."""
    if day is not None and since is not None:
        raise UsageError("--date and --since are alternatives; give one")
    if day is not None:
        return [day]
    if since is not None:
        return [d for d in raw_days(layout) if d >= since]
    return None


def segments_before(layout: ArchiveLayout, first: date, days: list[date]) -> list[Segment]:
    """The segments of the nearest day before ``first`` that has any (``days``: ``raw_days``)."""
    for day in reversed(days[: bisect_left(days, first)]):
        segments = layout.segments(day)
        if segments:
            return segments
    return []


def segments_after(layout: ArchiveLayout, last: date, days: list[date]) -> list[Segment]:
    """The segments of the nearest day after ``last`` that has any."""
    for day in days[bisect_right(days, last) :]:
        segments = layout.segments(day)
        if segments:
            return segments
    return []
