"""``replica heal``: an archive's gaps filled from another archive, or from node files.

Archives are real Parquet files written as the recorder writes them (``tests/rawarchive.py``),
with gap records for their holes as the recorder would leave them; the CLI runs as a
subprocess, and killed runs are real processes killed with SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replica.decoder.archive import decode_archive, pending_segments
from replica.decoder.core import Decoder
from replica.schemas.archive import GAP_SCHEMA, ArchiveLayout
from replica.schemas.files import publish_parquet
from replica.schemas.heals import healed_ranges
from replica.schemas.lock import ArchiveLock, maintenance_lock

from replica.maintenance.heal import heal
from replica.maintenance.node_import import import_node
from replica.maintenance.verify import read_gaps, verify
from tests.conftest import raw_rows, replica, table_rows
from tests.rawarchive import payload_rows, write_archive
from tests.test_import_node import BASE, node_file

FIRST = 1000
# 23:59:59.000 UTC: 300 commands 10 ms apart cross midnight, so a heal spans two days.
MIDNIGHT_TS_MS = 1_795_219_199_000
ROWS = payload_rows([f"command {i}".encode() for i in range(300)], FIRST, MIDNIGHT_TS_MS)


def build(root: Path, missing: set[int], per_segment: int = 100, rows: list | None = None) -> Path:
    """An archive of ``rows`` (ROWS) without the seqs ``missing``, with a gap record for each
    hole between the seqs it holds, as a recorder leaves them."""
    kept = [row for row in rows or ROWS if row["seq"] not in missing]
    write_archive(root, kept, per_segment)
    layout = ArchiveLayout(root)
    records = [
        {
            "from_seq": before["seq"] + 1,
            "to_seq": after["seq"] - 1,
            "missing": after["seq"] - before["seq"] - 1,
            "cause": "jump",
            "detected_ts_us": after["recv_ts_us"],
            "before_ts_ms": before["ts_ms"],
            "after_ts_ms": after["ts_ms"],
        }
        for before, after in pairwise(kept)
        if after["seq"] > before["seq"] + 1
    ]
    for record in records:
        path = layout.unit_path(
            layout.gaps_dir, record["after_ts_ms"], f"unit-{record['from_seq']}"
        )
        publish_parquet(pa.Table.from_pylist([record], schema=GAP_SCHEMA), path)
    return root


def seqs(missing: set[int]) -> set[int]:
    return {row["seq"] for row in ROWS} - missing


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file but the locks (which each run takes), with its size and mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def digest(root: Path) -> str:
    result = replica("replay", root, "--digest")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_archives_with_different_holes_heal_each_other(tmp_path: Path) -> None:
    one = build(tmp_path / "one", {*range(1050, 1060), 1150, *range(1240, 1300)})
    other = build(tmp_path / "other", {*range(1000, 1010), *range(1100, 1120), 1151})
    for archive, source in ((one, other), (other, one)):
        result = replica("heal", archive, "--from", source)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    assert raw_rows(one) == raw_rows(other) == ROWS  # payloads and timestamps as recorded
    for archive in (one, other):
        checked = replica("verify", archive)
        assert checked.returncode == 0, checked.stdout
        assert replica("gaps", archive).stdout == "no gaps\n"
    assert digest(one) == digest(other)
    summary = replica(
        "sql",
        one,
        "SELECT sum(recorded), sum(healed), sum(missing) FROM completeness",
        "--format",
        "csv",
    )
    assert summary.stdout.splitlines()[1] == "229,71,0"
    stats = replica("stats", one)
    assert [line.split()[:4] for line in stats.stdout.splitlines()[2:]] == [
        ["2026-11-20", "100", "10", "0"],
        ["2026-11-21", "200", "61", "0"],
    ]
    # The gap records stay, as history; the heal records say what filled them.
    assert len(ArchiveLayout(one).gap_rows()) == 2
    assert sum(hi - lo + 1 for lo, hi in healed_ranges(ArchiveLayout(one))) == 71
    history = replica(
        "sql",
        one,
        "SELECT g.from_seq, h.from_seq, h.healed, h.source FROM gaps g JOIN heals h "
        "ON h.from_seq BETWEEN g.from_seq AND g.to_seq ORDER BY 1",
        "--format",
        "csv",
    )
    assert history.stdout.splitlines()[1:] == [
        f"1050,1050,10,{other}",
        f"1150,1150,1,{other}",
    ]


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    archive = build(tmp_path / "archive", {*range(1050, 1060), *range(1250, 1260)})
    source = build(tmp_path / "source", {1150})
    assert replica("heal", archive, "--from", source).returncode == 0
    before = files(archive)
    again = replica("heal", archive, "--from", source)
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith(": nothing written\n")
    assert files(archive) == before


def test_a_differing_payload_is_a_conflict_and_the_archive_keeps_its_bytes(tmp_path: Path):
    archive = build(tmp_path / "archive", set())
    altered = [dict(row) for row in ROWS]
    altered[40]["raw"] = b"something else"
    source = build(tmp_path / "source", set(), rows=altered)
    raw_before = {k: v for k, v in files(archive).items() if k.startswith("raw/")}
    result = replica("heal", archive, "--from", source)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"replica: conflict: seq {FIRST + 40} differs in {source}: the archive")
    assert {k: v for k, v in files(archive).items() if k.startswith("raw/")} == raw_before
    assert raw_rows(archive) == ROWS
    [row] = table_rows(archive / "quarantine")
    assert (row["kind"], row["seq"]) == ("conflict", FIRST + 40)
    assert str(source) in row["reason"]
    assert b"something else".hex() in row["frame"]
    before = files(archive)
    again = replica("heal", archive, "--from", source)
    assert again.returncode == 1 and again.stderr == result.stderr  # reported, not written again
    assert files(archive) == before


def test_a_hole_inside_a_segment_is_filled_by_rewriting_it_and_decode_redoes_it(tmp_path: Path):
    archive = build(tmp_path / "archive", {1050}, per_segment=1000)
    source = build(tmp_path / "source", set(), per_segment=1000)
    first_day = ArchiveLayout(archive).segments()[0]
    assert (first_day.first_seq, first_day.last_seq) == (1000, 1099)
    decode_archive(archive)
    version = Decoder().version
    assert pending_segments(archive, version)[1] == []
    size = first_day.path.stat().st_size
    summary = heal(archive, [source])
    assert (summary.added, summary.segments_rewritten, summary.segments_written) == (1, 1, 0)
    segments = ArchiveLayout(archive).segments()
    assert segments[0].path == first_day.path and first_day.path.stat().st_size != size
    assert pq.read_table(first_day.path).column("seq").to_pylist() == list(range(1000, 1100))
    assert pending_segments(archive, version)[1] == [segments[0]]  # stale: decoded again
    assert decode_archive(archive).decoded == 1
    undecoded = [r["seq"] for r in table_rows(archive / "decoded" / "undecoded")]
    assert sorted(seq for seq in undecoded if seq < 1100) == list(range(1000, 1100))
    assert verify(archive).ok


def test_a_source_of_another_seq_space_is_refused(tmp_path: Path) -> None:
    feed = build(tmp_path / "feed", {1050})
    node = tmp_path / "node-archive"
    import_node([node_file(tmp_path / "node", BASE, 10)], node)
    before = files(feed)
    for archive, source, line in (
        (feed, node, f"source {node} holds node block heights, but {feed} holds feed commands"),
        (node, feed, f"source {feed} holds feed commands, but {node} holds node block heights"),
        (feed, tmp_path / "node", f"source {tmp_path / 'node'} holds node block heights"),
    ):
        result = replica("heal", archive, "--from", source)
        assert result.returncode == 2
        assert result.stderr.startswith(f"replica: error: {line}")
        assert result.stderr.count("\n") == 1
    assert files(feed) == before


def test_a_node_archive_is_healed_from_the_node_files(tmp_path: Path) -> None:
    node = tmp_path / "node"
    archive = tmp_path / "archive"
    import_node([node_file(node, BASE, 10), node_file(node, BASE + 20, 10)], archive)
    assert [(g.from_seq, g.to_seq) for g in read_gaps(archive)] == [(BASE + 11, BASE + 20)]
    node_file(node, BASE + 10, 10)
    result = replica("heal", archive, "--from", node)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("10 seqs added from 1 sources (1 segments written")
    assert [row["seq"] for row in raw_rows(archive)] == list(range(BASE + 1, BASE + 31))
    assert read_gaps(archive) == []
    assert verify(archive).ok


def test_beside_a_running_recorder_only_closed_days_below_its_last_seq_are_filled(tmp_path):
    today = payload_rows([b"today"] * 50, 2000, time.time_ns() // 10**6 - 60_000)
    rows = ROWS[:100] + today
    archive = build(tmp_path / "archive", {1050, 2010, *range(2040, 2050)}, rows=rows)
    source = build(tmp_path / "source", set(), rows=rows)
    with ArchiveLock(ArchiveLayout(archive).lock_path):  # a recorder holds the archive
        summary = heal(archive, [source])
    assert summary.added == 1  # seq 1050 of a closed day
    day = datetime.fromtimestamp(today[0]["ts_ms"] / 1000, UTC).date()
    assert summary.warnings[0].startswith(
        f"1 seqs of {source} not added: a running recorder may still write {day}: it is open"
    )
    assert summary.warnings[1:] == [
        f"10 seqs of {source} not added: above the archive's last seq, which a running "
        "recorder writes after"
    ]
    assert verify(archive).ok
    alone = heal(archive, [source])  # the recorder has stopped
    assert (alone.added, alone.warnings) == (11, [])
    assert raw_rows(archive) == rows


KILL_SCRIPT = """
import os, signal, sys
from replica.maintenance import heal, heal_write, staging

point, calls = sys.argv[3], [0]

def dying(module, name):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(module, name, wrapper)

module, name = {
    "build": (heal_write, "write_file"),
    "journal": (staging.DayStaging, "publish"),
    "swap": (staging, "swap_in"),
    "settle": (staging, "settle"),
    "day": (heal, "write_day"),
}[point]
dying(module, name)
heal.heal(sys.argv[1], [sys.argv[2]])
"""


@pytest.mark.parametrize("point", ["build", "journal", "swap", "settle", "day"])
def test_a_heal_killed_at_any_point_is_completed_by_the_next(tmp_path: Path, point: str):
    missing = {*range(1050, 1060), *range(1120, 1130), 1250}
    archive = build(tmp_path / "archive", missing)
    source = build(tmp_path / "source", {1250})  # missed by both
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(archive), str(source), point], timeout=120
    )
    assert killed.returncode == -9
    assert verify(archive).ok  # a reader never sees half a heal
    result = replica("heal", archive, "--from", source)
    assert result.returncode == 0, result.stderr
    assert raw_rows(archive) == [row for row in ROWS if row["seq"] != 1250]
    assert not (archive / ".compact").exists()
    healed = {s for lo, hi in healed_ranges(ArchiveLayout(archive)) for s in range(lo, hi + 1)}
    assert healed == missing - {1250}
    assert [(g.from_seq, g.to_seq) for g in read_gaps(archive)] == [(1250, 1250)]
    assert verify(archive).ok


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sets(st.integers(0, 59), max_size=50),
    st.sets(st.integers(0, 59), max_size=50),
    st.integers(5, 25),
)
def test_after_a_heal_the_archive_holds_the_union_and_gaps_what_neither_had(
    missing_one: set[int], missing_other: set[int], per_segment: int
) -> None:
    rows = ROWS[:60]
    lost_one = {FIRST + i for i in missing_one}
    lost_other = {FIRST + i for i in missing_other}
    with tempfile.TemporaryDirectory() as scratch:
        one = build(Path(scratch) / "one", lost_one, per_segment, rows)
        other = build(Path(scratch) / "other", lost_other, per_segment, rows)
        summary = heal(one, [other])
        union = {row["seq"] for row in rows} - (lost_one & lost_other)
        assert [row["seq"] for row in raw_rows(one)] == sorted(union)
        assert summary.conflicts == []
        still = {s for g in read_gaps(one) for s in range(g.from_seq, g.to_seq + 1)}
        assert still == set(range(min(union), max(union) + 1)) - union
        report = verify(one)
        assert report.ok, report.problems


def test_heal_takes_turns_with_compact_and_decode(tmp_path: Path) -> None:
    archive = build(tmp_path / "archive", {1050})
    source = build(tmp_path / "source", set())
    before = files(archive)
    with maintenance_lock(ArchiveLayout(archive), "replica compact"):
        result = replica("heal", archive, "--from", source)
    assert result.returncode == 4
    assert f"held by replica compact (pid {os.getpid()})" in result.stderr
    assert result.stderr.count("\n") == 1
    assert files(archive) == before


def test_verify_and_duckdb_while_a_heal_runs_see_each_seq_once(tmp_path: Path) -> None:
    """A day is swapped in whole: at any moment a reader sees the day before or after."""
    archive = build(tmp_path / "archive", {*range(1020, 1030), 1099, *range(1150, 1170), 1260})
    source = build(tmp_path / "source", set())
    reports: list = []
    counts: list = []
    running = True
    looping = threading.Event()
    glob = f"read_parquet('{archive}/raw/date=*/hour=*/*.parquet')"

    def read_in_a_loop() -> None:
        with duckdb.connect() as db:
            while running or not reports:
                looping.set()
                reports.append(verify(archive))
                counts.extend(
                    db.sql(f"SELECT count(*), count(DISTINCT seq) FROM {glob}").fetchall()
                )

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    looping.wait()
    try:
        assert heal(archive, [source]).added == 32
    finally:
        running = False
        reader.join()
    for report in reports:
        assert report.ok, report.problems
    assert all(total == distinct for total, distinct in counts)
    assert raw_rows(archive) == ROWS


def test_a_seq_inside_a_segment_but_of_another_hour_is_left_with_a_warning(tmp_path: Path):
    archive = build(tmp_path / "archive", {1050}, per_segment=1000)
    moved = [dict(row) for row in ROWS]
    moved[50]["ts_ms"] += 3_600_000  # the source says seq 1050 came an hour later
    source = build(tmp_path / "source", set(), rows=moved)
    before = files(archive)
    summary = heal(archive, [source])
    [segment] = [s for s in ArchiveLayout(archive).segments() if s.first_seq == 1000]
    assert summary.added == 0
    assert summary.warnings == [
        f"1 seqs inside {segment.path} have times outside its hour; not healed (a segment is "
        "only rewritten within its hour)"
    ]
    assert files(archive) == before
    assert [(g.from_seq, g.to_seq) for g in read_gaps(archive)] == [(1050, 1050)]
