"""Compaction of archives whose ts_ms goes back across an hour: the recorder partitions by ts_ms,
so seqs 1 and 3 can sit in one hour and seq 2 in the next. Merging 1 with 3 would make a segment
whose seq range overlaps seq 2's; compaction must merge only segments that follow each other in
seq order, and ``verify`` must catch an overlap however it came about.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replica.schemas.archive import ArchiveLayout, Segment

import replica
from replica.maintenance.compact import compact
from replica.maintenance.verify import verify
from tests.conftest import replica as run_replica
from tests.rawarchive import write_archive, write_segment
from tests.replayarchives import rows_for

MIDNIGHT_MS = 1_795_219_200_000  # 2026-11-21T00:00Z
LATER = datetime(2026, 11, 25, tzinfo=UTC)  # every day of these archives closed


def back_and_forth(root: Path) -> list[Segment]:
    """Seq 1 at 00:59:59.999, seq 2 at 01:00:00.000, seq 3 at 00:59:59.999: three segments,
    as the recorder seals them, in two hour partitions."""
    hour_end = MIDNIGHT_MS + 3_600_000 - 1
    return write_archive(root, rows_for([1, 2, 3], [hour_end, hour_end + 1, hour_end]))


def replayed(root: Path) -> list[tuple[int, int, bytes]]:
    return [(r.seq, r.ts_ms, r.raw) for r in replica.open(root).replay()]


def test_segments_of_an_hour_split_by_another_hour_are_not_merged(tmp_path: Path):
    archive = tmp_path / "archive"
    assert len(back_and_forth(archive)) == 3
    digest = run_replica("replay", archive, "--digest")
    assert digest.returncode == 0, digest.stderr
    result = run_replica("compact", archive)
    assert result.returncode == 0, result.stderr
    checked = run_replica("verify", archive)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    after = run_replica("replay", archive, "--digest")
    assert (after.returncode, after.stdout, after.stderr) == (0, digest.stdout, "")
    assert digest.stdout.endswith(" 3 commands\n")
    assert result.stdout.splitlines() == ["nothing to compact"]


def test_verify_reports_a_segment_whose_seq_range_overlaps_another(tmp_path: Path):
    """However an overlap came about, verify says so (and exits 1)."""
    archive = tmp_path / "archive"
    hour_end = MIDNIGHT_MS + 3_600_000 - 1
    write_segment(archive, rows_for([2], [hour_end + 1]))
    write_segment(archive, rows_for([1, 3], [hour_end, hour_end]))
    report = verify(archive)
    assert any("seqs 2-2 overlap another segment" in p for p in report.problems), report.problems
    result = run_replica("verify", archive)
    assert result.returncode == 1 and "overlap another segment" in result.stdout


HOUR_MS = 3_600_000


@st.composite
def wandering_rows(draw: st.DrawFn) -> tuple[list[dict], int]:
    """Rows with consecutive seqs whose ts_ms step back and forth across the hour boundaries
    around a midnight; and how many rows a segment holds at most."""
    count = draw(st.integers(1, 40))
    steps = st.integers(-2 * HOUR_MS, 2 * HOUR_MS) | st.sampled_from([-1, 0, 1])
    ts = MIDNIGHT_MS - HOUR_MS + draw(st.integers(-3, 3))
    stamps = []
    for _ in range(count):
        stamps.append(ts)
        ts = min(max(ts + draw(steps), MIDNIGHT_MS - 3 * HOUR_MS), MIDNIGHT_MS + 3 * HOUR_MS)
    return rows_for(list(range(100, 100 + count)), stamps), draw(st.integers(1, 5))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(wandering_rows())
def test_compaction_keeps_any_archive_replaying_the_same(
    tmp_path: Path, case: tuple[list[dict], int]
):
    rows, per_segment = case
    archive = tmp_path / "archive"
    shutil.rmtree(archive, ignore_errors=True)
    write_archive(archive, rows, per_segment)
    before = replayed(archive)
    compact(archive, now=LATER)
    report = verify(archive)
    assert report.ok, report.problems
    assert replayed(archive) == before
    names = [(s.first_seq, s.last_seq) for s in ArchiveLayout(archive).segments()]
    assert all(a[1] < b[0] for a, b in pairwise(names))
