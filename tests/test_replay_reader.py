"""What a replay reads and emits: selection by seqs and times, skipping what is outside the
range without reading it, gaps reported in place, and archives it must refuse.

Archives are real Parquet files: the fixture feed as the recorder archived it, or synthetic
segments with small row groups; "not read" is proven by damaging the data outside the range.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.replay.gaps import GapTracker
from replica.schemas.archive import RAW_SCHEMA, ArchiveLayout
from replica.schemas.errors import ArchiveError, GapInRange, UsageError

import replica
from tests.replayarchives import (
    FEED_FIRST_SEQ,
    FEED_GAP,
    FEED_LAST_SEQ,
    damage_row_group,
    record_fixture_feed,
    rows_for,
    write_gap_records,
    write_segments,
)


@pytest.fixture(scope="module")
def fixture_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_fixture_feed(tmp_path_factory.mktemp("replay") / "archive")


def records(replay) -> list:
    return [item for item in replay if isinstance(item, replica.ReplayRecord)]


def gaps(replay) -> list[tuple]:
    return [tuple(item) for item in replay if isinstance(item, replica.ReplayGap)]


def seqs(replay) -> list[int]:
    return [item.seq for item in records(replay)]


def test_the_whole_archive_comes_back_in_seq_order_with_every_column(
    fixture_archive: Path,
) -> None:
    archived = []
    for segment in ArchiveLayout(fixture_archive).segments():
        archived += pq.read_table(segment.path).to_pylist()
    replayed = records(replica.open(fixture_archive).replay())
    assert len(replayed) == 3000
    assert [r._asdict() | {"scheduled_s": None} for r in replayed] == [
        row | {"scheduled_s": None} for row in archived
    ]


def test_a_seq_range_is_inclusive_and_reports_the_gap_inside_it(fixture_archive: Path) -> None:
    archive = replica.open(fixture_archive)
    low, high = FEED_GAP
    items = list(archive.replay(from_seq=low - 2, to_seq=high + 2))
    assert [getattr(i, "seq", None) for i in items] == [low - 2, low - 1, None, high + 1, high + 2]
    assert tuple(items[2]) == (low, high, 5, "jump")
    assert seqs(archive.replay(from_seq=FEED_FIRST_SEQ + 10, to_seq=FEED_FIRST_SEQ + 10)) == [
        FEED_FIRST_SEQ + 10
    ]


def test_a_time_range_is_half_open_on_ts_ms(fixture_archive: Path) -> None:
    archive = replica.open(fixture_archive)
    all_records = records(archive.replay())
    start_ms, end_ms = all_records[100].ts_ms, all_records[200].ts_ms
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    chosen = records(
        archive.replay(start=start, end=start + timedelta(milliseconds=end_ms - start_ms))
    )
    assert [r.seq for r in chosen] == [r.seq for r in all_records if start_ms <= r.ts_ms < end_ms]
    assert chosen[0].seq == all_records[100].seq and chosen[-1].seq == all_records[199].seq
    both = records(archive.replay(from_seq=all_records[150].seq, start=start))
    assert both[0].seq == all_records[150].seq and both[-1].seq == FEED_LAST_SEQ


def test_gaps_at_the_ends_are_reported_only_where_the_range_is_bounded(
    fixture_archive: Path,
) -> None:
    archive = replica.open(fixture_archive)
    first, last = FEED_FIRST_SEQ, FEED_LAST_SEQ
    assert gaps(archive.replay(from_seq=first - 10, to_seq=first + 2)) == [
        (first - 10, first - 1, 10, None)
    ]
    assert gaps(archive.replay(from_seq=last - 1, to_seq=last + 5)) == [
        (last + 1, last + 5, 5, None)
    ]
    assert gaps(archive.replay(from_seq=last + 100, to_seq=last + 199)) == [
        (last + 100, last + 199, 100, None)
    ]
    assert gaps(archive.replay(from_seq=last + 100)) == []
    assert gaps(archive.replay(to_seq=first + 5)) == []
    assert gaps(archive.replay()) == [(*FEED_GAP, 5, "jump")]


def test_fail_on_gap_raises_where_the_gap_is(fixture_archive: Path) -> None:
    seen = []
    with pytest.raises(GapInRange, match=r"missing seqs 482911500-482911504 .*cause jump") as exc:
        for item in replica.open(fixture_archive).replay(fail_on_gap=True):
            seen.append(item.seq)
    assert seen[-1] == FEED_GAP[0] - 1 and len(seen) == 1500
    assert tuple(exc.value.gap) == (*FEED_GAP, 5, "jump")


def test_gap_causes_come_from_every_gap_record_that_covers_the_gap(tmp_path: Path) -> None:
    write_segments(tmp_path, rows_for([*range(0, 10), *range(20, 30), *range(40, 50)]))
    write_gap_records(tmp_path, [(10, 14, "reconnect"), (15, 19, "restart")])
    assert gaps(replica.open(tmp_path).replay()) == [
        (10, 19, 10, "reconnect+restart"),
        (30, 39, 10, None),
    ]


def test_commands_left_out_by_time_are_not_gaps(tmp_path: Path) -> None:
    """Timestamps that go backwards put some seqs outside a time range: those are archived,
    not missing, and a gap between two emitted commands is still reported."""
    times = [1000, 1010, 900, 1020, 1030, 950, 1040, 1050]
    base = 1_795_219_080_000
    write_segments(tmp_path, rows_for([0, 1, 2, 3, 4, 5, 8, 9], [base + t for t in times]))
    start = datetime.fromtimestamp((base + 1000) / 1000, UTC)
    items = list(replica.open(tmp_path).replay(start=start))
    assert [getattr(i, "seq", None) for i in items] == [0, 1, 3, 4, None, 8, 9]
    assert tuple(items[4])[:3] == (6, 7, 2)


def test_segments_and_row_groups_outside_the_range_are_not_read(tmp_path: Path) -> None:
    rows = rows_for(list(range(1000)))
    paths = write_segments(tmp_path, rows, per_segment=500, row_group_rows=100)
    damage_row_group(paths[0], 1)  # seqs 100-199
    damage_row_group(paths[1], 3)  # seqs 800-899
    archive = replica.open(tmp_path)
    assert seqs(archive.replay(from_seq=250, to_seq=799)) == list(range(250, 800))
    start = datetime.fromtimestamp(rows[200]["ts_ms"] / 1000, UTC)
    end = datetime.fromtimestamp(rows[800]["ts_ms"] / 1000, UTC)
    assert seqs(archive.replay(start=start, end=end)) == list(range(200, 800))
    with pytest.raises(ArchiveError, match=rf"cannot read segment {paths[0]}"):
        seqs(archive.replay(from_seq=150))


def test_a_skipped_hour_counts_as_held_and_gaps_around_it_are_reported(tmp_path: Path) -> None:
    """A segment filed under an hour before the time range is not even opened (no ts_ms in a
    segment is past its hour; earlier ones can be, so a later hour is still looked into); its
    seqs still count as archived, so a gap is reported only where seqs are really missing."""
    hour_ms = 3_600_000
    base = 1_795_219_080_000 - 1_795_219_080_000 % hour_ms
    times = [base + 10, base + 20, base + hour_ms + 10, base + hour_ms + 20, base + 2 * hour_ms]
    paths = write_segments(tmp_path, rows_for([0, 1, 2, 3, 7], [base + t - base for t in times]))
    paths[0].write_bytes(b"not parquet")  # the first hour: seqs 0-1
    archive = replica.open(tmp_path)
    start = datetime.fromtimestamp((base + hour_ms) / 1000, UTC)
    items = list(archive.replay(start=start, end=start + timedelta(hours=1)))
    assert [i.seq for i in items] == [2, 3]
    after = datetime.fromtimestamp((base + 2 * hour_ms) / 1000, UTC)
    items = list(archive.replay(from_seq=0, start=after))
    assert [tuple(i) if isinstance(i, replica.ReplayGap) else i.seq for i in items] == [
        (4, 6, 3, None),
        7,
    ]


def test_overlapping_segments_and_foreign_files_are_refused(tmp_path: Path) -> None:
    overlapping = tmp_path / "overlapping"
    write_segments(overlapping, rows_for(list(range(10))))
    write_segments(overlapping, rows_for(list(range(5, 15))))
    with pytest.raises(ArchiveError, match="not in seq order or overlap"):
        list(replica.open(overlapping).replay())
    wrong = tmp_path / "wrong"
    (path,) = write_segments(wrong, rows_for(list(range(10))))
    pq.write_table(pq.read_table(path).drop_columns(["raw"]), path)
    with pytest.raises(ArchiveError, match=rf"segment {path} has no binary column raw"):
        list(replica.open(wrong).replay())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"from_seq": 10, "to_seq": 9}, "from_seq 10 is above to_seq 9"),
        ({"from_seq": -1}, "from_seq must be a seq"),
        ({"to_seq": "7"}, "to_seq must be a seq"),
        ({"start": datetime(2026, 11, 20)}, "has no time zone"),
        (
            {
                "start": datetime(2026, 11, 20, tzinfo=UTC),
                "end": datetime(2026, 11, 20, tzinfo=UTC),
            },
            "is not before end",
        ),
        ({"speed": 0}, "speed must be a number of at least 1e-06"),
        ({"speed": float("inf")}, "speed must be a number of at least 1e-06"),
        ({"speed": 10**400}, "speed must be a number of at least 1e-06"),
        ({"from_seq": 2**63}, "from_seq is above 9223372036854775807, the largest seq"),
        ({"clock": "wall"}, "clock 'wall' is not a timestamp column"),
        ({"precise": True}, "precise pacing needs a speed"),
    ],
)
def test_bad_arguments_are_refused_before_reading(
    fixture_archive: Path, arguments: dict, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        replica.open(fixture_archive).replay(**arguments)


def test_open_refuses_what_is_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="does not exist"):
        replica.open(tmp_path / "nope")
    with pytest.raises(ArchiveError, match="is not an archive: it has none of raw/"):
        replica.open(tmp_path)


# ---- the gap rule, against a brute-force reference -------------------------------------------


def reference_gaps(held: list[int], kept: list[bool], low: int | None, high: int | None):
    """(index among emitted, gap) pairs by the rule in replay.gaps, computed the slow way."""
    emitted = [s for s, k in zip(held, kept, strict=True) if k]
    bounds = [low - 1] if low is not None else []
    bounds += emitted + ([high + 1] if high is not None and (emitted or low is not None) else [])
    if low is None and not emitted:
        return []
    held_set = set(held)
    placed = []
    for i, (a, b) in enumerate(pairwise(bounds)):
        missing = [s for s in range(a + 1, b) if s not in held_set]
        runs = []
        for s in missing:
            if runs and runs[-1][1] == s - 1:
                runs[-1][1] = s
            else:
                runs.append([s, s])
        index = i if low is not None else i + 1
        placed += [(index, (r[0], r[1])) for r in runs]
    return placed


@settings(max_examples=300, deadline=None)
@given(
    held=st.lists(st.integers(0, 60), unique=True, min_size=1).map(sorted),
    data=st.data(),
)
def test_gap_tracker_matches_the_rule(held: list[int], data: st.DataObject) -> None:
    kept = data.draw(st.lists(st.booleans(), min_size=len(held), max_size=len(held)))
    low = data.draw(st.none() | st.integers(0, held[0]))
    high = data.draw(st.none() | st.integers(held[-1], 70))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(held) - 1, 1)))) - {len(held)})
    tracker, placed, emitted_before = GapTracker(low, high), [], 0
    for a, b in zip([0, *cuts], [*cuts, len(held)], strict=True):
        part = kept[a:b]
        for at, found in tracker.held(pa.array(held[a:b], pa.int64()), pa.array(part)):
            placed += [(emitted_before + at, gap) for gap in found]
        emitted_before += sum(part)
    placed += [(emitted_before, gap) for gap in tracker.finish()]
    assert placed == reference_gaps(held, kept, low, high)


def test_the_reader_only_reads_raw_columns_by_name(tmp_path: Path) -> None:
    """Column order in a file does not matter: columns are read by name."""
    (path,) = write_segments(tmp_path, rows_for(list(range(5))))
    table = pq.read_table(path)
    pq.write_table(table.select(list(reversed(RAW_SCHEMA.names))), path)
    assert seqs(replica.open(tmp_path).replay()) == list(range(5))


def test_a_servers_reader_reads_batches_of_its_byte_budget(fixture_archive: Path) -> None:
    """A server holds a reader per client: with ``batch_bytes`` its batches carry about that
    many bytes of payloads (rows per batch from the row group's mean payload), whatever the
    row groups hold, and together every command once."""
    from replica.replay.reader import read_selected
    from replica.replay.selection import Selection

    layout = ArchiveLayout(fixture_archive)
    budget = 4096
    batches = [
        batch
        for batch in read_selected(layout, Selection(), 8192, batch_bytes=budget)
        if isinstance(batch, pa.RecordBatch)
    ]
    assert sum(batch.column("raw").nbytes for batch in batches) / len(batches) <= 2 * budget
    read = [seq for batch in batches for seq in batch.column("seq").to_pylist()]
    assert read == seqs(replica.open(fixture_archive).replay())


def test_a_parked_servers_reader_reads_on_where_it_stopped(tmp_path: Path) -> None:
    """A server's reader parked after every item (``replay.resumable``: its segment closed,
    reopened when asked again) gives what a reader never parked gives: every row once in seq
    order, the same spans skipped by time, and nothing from a segment sealed after it started."""
    from replica.replay.reader import SkippedSpan, read_selected
    from replica.replay.resumable import Resumable
    from replica.replay.selection import Selection

    hour_ms = 3_600_000
    base = 1_795_219_080_000 - 1_795_219_080_000 % hour_ms
    held = [*range(300), *range(300, 400), *range(410, 600)]  # 400-409 missing
    times = [base + (hour_ms if seq >= 300 else 0) + 10 * seq for seq in held]
    write_segments(tmp_path, rows_for(held, times), row_group_rows=50)
    layout = ArchiveLayout(tmp_path)
    selection = Selection(from_seq=10, start_ms=times[held.index(350)])

    def flat(items) -> list:
        out = []
        for item in items:
            if isinstance(item, SkippedSpan):
                out.append(tuple(item))
            else:
                out.extend(item.column("seq").to_pylist())
        return out

    expected = flat(read_selected(layout, selection, 8192, batch_bytes=64))
    reader = Resumable(layout, selection, 8192, batch_bytes=64)
    got = [next(reader)]
    later = [base + hour_ms + 10 * seq for seq in range(600, 700)]
    write_segments(tmp_path, rows_for(list(range(600, 700)), later), row_group_rows=50)
    for item in reader:
        reader.park()
        got.append(item)
    assert flat(got) == expected
    assert expected[:2] == [(10, 299), (300, 349)] and expected[-1] == 599
