"""Compaction's cost follows the day it works on, not the archive's age: a day's run lists that
day and its neighbours only, and a day it did is marked done, until a file enters it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from replica.schemas.archive import ArchiveLayout

from replica.maintenance.compact import compact
from replica.maintenance.compact_marks import mark_path
from replica.maintenance.node_import import import_node
from replica.maintenance.verify import verify
from tests.dayarchive import (
    AFTER,
    DAYS,
    PER_HOUR,
    build_days,
    day_files,
    other_days,
    spoil,
    touched,
)
from tests.rawarchive import write_segment
from tests.test_import_node import BASE, node_file


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return build_days(tmp_path / "archive")


def test_a_day_is_compacted_without_listing_or_opening_days_beyond_its_neighbours(archive: Path):
    day = DAYS[2]
    for other in DAYS[:2] + DAYS[3:]:
        for path in day_files(archive, other):
            spoil(path)
    paths = touched(
        "from replica.maintenance.compact import compact\n"
        f"from datetime import date, datetime, UTC\nafter = datetime({AFTER.year}, "
        f"{AFTER.month}, {AFTER.day}, tzinfo=UTC)",
        f"compact(Path({str(archive)!r}), date({day.year}, {day.month}, {day.day}), after)",
    )
    assert other_days(paths, archive, {DAYS[1], day, DAYS[3]}) == []
    assert other_days(paths, archive, {day}) != []  # the neighbours are listed, nothing more
    assert len(day_files(archive, day)) == 3  # each hour's segments became one
    assert pq.read_metadata(day_files(archive, day)[0]).num_rows == PER_HOUR * 4


def test_a_marked_day_is_not_planned_again_until_an_import_adds_a_file(archive: Path):
    first = compact(archive, now=AFTER)
    assert [d.segments_in for d in first.days] == [PER_HOUR * 3] * len(DAYS)
    assert all(mark_path(ArchiveLayout(archive), day).exists() for day in DAYS)
    for day in DAYS:  # a second run that opened any file would fail on these
        for path in day_files(archive, day):
            spoil(path)
    assert compact(archive, now=AFTER).lines() == ["nothing to compact"]


def test_a_file_added_to_a_marked_day_makes_it_planned_again(archive: Path):
    compact(archive, now=AFTER)
    day = DAYS[1]
    hour_dir = day_files(archive, day)[0].parent
    ts = int(hour_dir.name.removeprefix("hour=")) * 3_600_000
    midnight = int(pq.read_table(day_files(archive, day)[0]).column("ts_ms")[0].as_py())
    midnight -= midnight % 86_400_000
    rows = [
        {"seq": 10_000 + i, "ts_ms": midnight + ts + 3_500_000 + i, "ingest_ts_us": 1,
         "publish_ts_us": 2, "recv_ts_us": 3, "raw": b"late"}
        for i in range(2)
    ]  # fmt: skip
    write_segment(archive, rows[:1])  # as an import would: two segments after the last
    write_segment(archive, rows[1:])
    again = compact(archive, now=AFTER)
    assert [(d.day, d.segments_in) for d in again.days] == [(day, 2)]
    assert "hour=00/00000000000000010000-00000000000000010001.parquet" in (
        mark_path(ArchiveLayout(archive), day).read_text()
    )
    assert compact(archive, now=AFTER).lines() == ["nothing to compact"]


def test_an_import_into_a_compacted_day_makes_it_planned_again(tmp_path: Path):
    archive = tmp_path / "archive"
    node_file(tmp_path / "first", BASE, 10)
    import_node([tmp_path / "first"], archive)
    (day,) = {s.day for s in ArchiveLayout(archive).segments()}
    after = datetime.combine(day + timedelta(days=2), datetime.min.time(), UTC)
    assert compact(archive, now=after).lines() == ["nothing to compact"]
    assert mark_path(ArchiveLayout(archive), day).exists()  # one segment: done as it is
    node_file(tmp_path / "next", BASE + 10, 10)
    import_node([tmp_path / "next"], archive)  # blocks 11-20: a new segment in that day
    again = compact(archive, now=after)
    assert [(d.day, d.segments_in) for d in again.days] == [(day, 2)]
    assert verify(archive).ok
    assert compact(archive, now=after).lines() == ["nothing to compact"]
