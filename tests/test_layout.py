"""``schemas.archive.ArchiveLayout``: opening an archive, and what a segment's path says."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.schemas.archive import (
    ArchiveLayout,
    Segment,
    date_partition,
    day_partition,
    hour_of,
    hour_partition,
    partition_day,
    partition_hour,
    segment_name,
)
from replica.schemas.errors import ArchiveError
from replica.schemas.frames import MAX_TS_MS

import replica
from replica.maintenance.compact import compact
from replica.maintenance.verify import read_gaps, verify
from replica.sql import table_views


@pytest.mark.parametrize(
    "read", [ArchiveLayout.open, replica.open, verify, read_gaps, compact, table_views]
)
def test_every_reader_refuses_a_missing_archive_with_one_message(read, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ArchiveError) as info:
        read(missing)
    assert str(info.value) == f"archive {missing} does not exist or is not a directory"


PROPERTY = settings(max_examples=300, deadline=None, database=None)


@PROPERTY
@given(st.integers(0, hour_of(MAX_TS_MS)))
def test_a_segments_path_gives_back_the_hour_it_was_filed_under(hour: int) -> None:
    path = ArchiveLayout(Path("archive")).segment_path(5, 9, hour)
    segment = Segment(path, 5, 9)
    assert segment.hour == hour and partition_hour(*hour_partition(hour)) == hour
    assert segment.day == datetime.fromtimestamp(hour * 3600, UTC).date()
    assert segment.partition == hour_partition(hour)


@PROPERTY
@given(st.dates(date(1970, 1, 1), date(9999, 12, 31)), st.integers(0, 86_399_999))
def test_a_day_partition_gives_back_its_day(day: date, ms_of_day: int) -> None:
    assert partition_day(day_partition(day)) == day
    ts_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000 + ms_of_day
    assert date_partition(ts_ms) == day_partition(day)


@pytest.mark.parametrize(
    "date_dir, hour_dir",
    [
        ("date=2025-1-5", "hour=03"),
        ("date=20250105", "hour=03"),
        ("date=2025-13-01", "hour=03"),
        ("date=2025-01-05x", "hour=03"),
        ("2025-01-05", "hour=03"),
        ("date=2025-01-05", "hour=3"),
        ("date=2025-01-05", "hour=24"),
        ("date=2025-01-05", "03"),
    ],
)
def test_directories_not_named_like_partitions_stand_for_no_hour(date_dir, hour_dir) -> None:
    segment = Segment(Path("raw", date_dir, hour_dir, "x.parquet"), 1, 1)
    assert segment.hour is None and partition_hour(date_dir, hour_dir) is None
    if date_dir != "date=2025-01-05":
        assert segment.day is None


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(st.integers(0, 2**63 - 1), min_size=2, max_size=6, unique=True))
def test_segments_are_listed_by_the_seqs_their_names_were_given(seqs: list[int]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        layout = ArchiveLayout(Path(directory))
        ranges = sorted(zip(sorted(seqs)[::2], sorted(seqs)[1::2], strict=False))
        for first, last in reversed(ranges):
            path = layout.segment_path(first, last, 490_000)
            assert path.name == segment_name(first, last)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        assert [(s.first_seq, s.last_seq) for s in layout.segments()] == ranges
