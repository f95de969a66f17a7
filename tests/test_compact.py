"""``replica compact`` over real archives (see ``tests.compactarchive``): what it merges and
what it leaves, that the rows are the same before and after, raw and decoded, that a second run
and ``replica decode`` then do nothing, which days it refuses, and the command as cron runs it.

Then interrupted and watched: a run killed at any step is finished or cleaned up by the next,
readers see a whole archive at every step, a replay running across a compaction emits every
command once, and decode and compact take turns. Interrupted runs are real: the steps of a
compaction run one by one from the test (or from a process that then kills itself), exactly as
``compact`` runs them, and stop where a crash would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replica.decoder.archive import decode_archive
from replica.recorder.frames import Command
from replica.recorder.spool import SpoolWriter
from replica.schemas.archive import RAW_ROW_GROUP_ROWS, RAW_SCHEMA, RAW_WRITE_OPTIONS, ArchiveLayout
from replica.schemas.decoded import SEGMENTS_TABLE
from replica.schemas.errors import ArchiveError, ArchiveLocked, UsageError
from replica.schemas.files import publish_parquet
from replica.schemas.metadata import RAW_SEGMENT_KEY

import replica
from replica.maintenance.compact import compact, stage_day
from replica.maintenance.staging import finish, settle, swap_in
from replica.maintenance.verify import Report, verify
from tests.compactarchive import (
    AFTER,
    DAY1,
    DAY2,
    START_MS,
    build_archive,
    decoded_archive,
    decoded_tables,
    raw_files,
    raw_table,
)
from tests.conftest import replica as run_replica
from tests.rawarchive import feed_rows
from tests.replayarchives import FEED_GAP, write_gap_records

DURING_DAY2 = datetime(2026, 11, 21, 12, tzinfo=UTC)  # only DAY1 closed


@pytest.fixture(scope="module")
def decoded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decoded_archive(tmp_path_factory.mktemp("compact") / "archive")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return build_archive(tmp_path / "archive")


@pytest.fixture
def decoded(decoded_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(decoded_template, tmp_path / "decoded"))


def marker_rows(root: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in (root / "decoded" / SEGMENTS_TABLE).rglob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            counts[row["table"]] = counts.get(row["table"], 0) + row["rows"]
    return counts


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file's inode and modification time: what a run that changes nothing keeps."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".maintenance.lock"
    }


def test_each_hour_becomes_one_segment_with_the_same_commands(archive: Path, tmp_path: Path):
    before = raw_table(archive)
    twin = Path(shutil.copytree(archive, tmp_path / "twin"))
    summary = compact(archive, now=AFTER)
    assert [day.day for day in summary.days] == [DAY1, DAY2] and not summary.skipped
    assert (summary.days[0].segments_in, summary.days[0].segments_out) == (30, 2)
    assert summary.days[0].bytes_out < summary.days[0].bytes_in
    assert raw_table(archive).equals(before)
    files = raw_files(archive, DAY1) + raw_files(archive, DAY2)
    hours = [f"{p.parent.parent.name}/{p.parent.name}" for p in files]
    assert hours == [
        "date=2026-11-20/hour=22",
        "date=2026-11-20/hour=23",
        "date=2026-11-21/hour=00",
        "date=2026-11-21/hour=01",
        "date=2026-11-21/hour=02",
    ]
    for path in files:
        parquet = pq.ParquetFile(path)
        assert parquet.metadata.row_group(0).column(5).compression == "ZSTD"
        assert parquet.schema_arrow.remove_metadata().equals(RAW_SCHEMA)
    report = verify(archive)
    assert report.ok and report.segments == 5 and report.rows == 3000, report.problems
    assert not (archive / ".compact").exists()
    # The same inputs give the same bytes.
    compact(twin, now=AFTER)
    assert [p.read_bytes() for p in raw_files(twin, DAY1)] == [
        p.read_bytes() for p in raw_files(archive, DAY1)
    ]


def test_a_second_run_changes_nothing_and_says_so(archive: Path):
    compact(archive, now=AFTER)
    before = snapshot(archive)
    summary = compact(archive, now=AFTER)
    assert summary.days == [] and summary.lines() == ["nothing to compact"]
    assert compact(archive, DAY1, now=AFTER).lines() == ["2026-11-20: nothing to merge"]
    assert snapshot(archive) == before


def test_segments_merge_up_to_the_target_and_one_left_alone_is_not_rewritten(
    archive: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("replica.maintenance.compact_raw.TARGET_ROWS", 280)
    hour = archive / "raw" / "date=2026-11-20" / "hour=22"
    last = sorted(hour.iterdir())[-1]
    before, kept = raw_table(archive), (last.stat().st_ino, last.stat().st_mtime_ns)
    summary = compact(archive, DAY1, now=AFTER)
    # 600 rows in segments of 40: 7 + 7 segments, and the last one alone.
    assert [pq.read_metadata(p).num_rows for p in sorted(hour.iterdir())] == [280, 280, 40]
    assert (last.stat().st_ino, last.stat().st_mtime_ns) == kept
    assert (summary.days[0].segments_in, summary.days[0].segments_out) == (28, 4)
    assert raw_table(archive).equals(before) and verify(archive).ok
    assert compact(archive, DAY1, now=AFTER).lines() == ["2026-11-20: nothing to merge"]


def test_merged_files_have_full_row_groups_and_the_first_inputs_metadata(tmp_path: Path):
    root = tmp_path / "archive"
    rows = feed_rows()
    for i, row in enumerate(rows):
        row["ts_ms"] = START_MS + i
    halves = [rows[:1500], rows[1500:]]  # split at the gap
    for number, part in enumerate(halves):
        schema = RAW_SCHEMA.with_metadata({"replica.recorder": f"0.{number}"})
        path = ArchiveLayout(root).segment_path(
            part[0]["seq"], part[-1]["seq"], START_MS // 3_600_000
        )
        options = dict(RAW_WRITE_OPTIONS, row_group_size=100)
        publish_parquet(pa.Table.from_pylist(part, schema=schema), path, **options)
    write_gap_records(root, [(*FEED_GAP, "reconnect")])
    compact(root, now=AFTER)
    (merged,) = raw_files(root, DAY1)
    parquet = pq.ParquetFile(merged)
    assert parquet.schema_arrow.metadata[b"replica.recorder"] == b"0.0"
    assert parquet.metadata.num_row_groups == 1 and parquet.metadata.num_rows == 3000
    assert RAW_ROW_GROUP_ROWS > 3000 and verify(root).ok


def test_only_closed_days_are_compacted(archive: Path):
    summary = compact(archive, now=DURING_DAY2)
    assert [day.day for day in summary.days] == [DAY1]
    assert "open until 2026-11-22 00:10 UTC" in summary.skipped[DAY2]
    assert len(raw_files(archive, DAY2)) == 45
    with pytest.raises(UsageError, match="2026-11-21 cannot be compacted yet: it is open until"):
        compact(archive, DAY2, now=DURING_DAY2)
    with pytest.raises(UsageError, match="2026-11-21 cannot be compacted yet"):
        compact(archive, DAY2, now=datetime(2026, 11, 22, 0, 5, tzinfo=UTC))


def test_a_day_a_spool_holds_commands_of_is_left_to_the_recorder(archive: Path):
    spool = SpoolWriter(ArchiveLayout(archive).spool_dir)
    spool.open("unit-1", {"unit": "unit-1"})
    late = Command(482_913_005, START_MS + 10_800_000, 0, 0, b"late")  # 2026-11-21T01:00Z
    spool.append("unit-1", [(1, late)])
    spool.close("unit-1")
    summary = compact(archive, now=AFTER)
    assert [day.day for day in summary.days] == [DAY1]
    assert "spool/unit-1.wal holds commands of it" in summary.skipped[DAY2]
    with pytest.raises(UsageError, match=r"spool/unit-1\.wal holds commands of it"):
        compact(archive, DAY2, now=AFTER)


def test_decoded_tables_merge_along_and_decode_then_has_nothing_to_do(decoded: Path):
    tables, counts = decoded_tables(decoded), marker_rows(decoded)
    summary = compact(decoded, now=AFTER)
    assert [day.decoded_merged for day in summary.days] == [2, 3]
    assert "decoded tables merged for 2" in summary.lines()[0]
    after = decoded_tables(decoded)
    assert after.keys() == tables.keys()
    for name, table in tables.items():
        assert after[name].equals(table), name
    assert marker_rows(decoded) == counts
    segments = ArchiveLayout(decoded).segments()
    for segment in segments:
        marker = decoded / "decoded" / SEGMENTS_TABLE / segment.path.parent.parent.name
        metadata = pq.read_schema(marker / segment.path.name).metadata
        assert (
            metadata[RAW_SEGMENT_KEY]
            == f"{segment.path.stat().st_size}:{segment.path.name}".encode()
        )
    names = {p.name for p in (decoded / "decoded").rglob("*.parquet")}
    assert names == {s.path.name for s in segments}
    before = snapshot(decoded)
    assert decode_archive(decoded).decoded == 0
    assert snapshot(decoded) == before


def test_decoded_output_that_is_not_current_is_dropped_and_decoded_again(decoded: Path):
    tables = decoded_tables(decoded)
    stale = min((decoded / "decoded" / SEGMENTS_TABLE / "date=2026-11-20").iterdir())
    stale.unlink()  # as a decode killed before its marker leaves it
    summary = compact(decoded, now=AFTER)
    assert [(d.decoded_merged, d.decoded_dropped) for d in summary.days] == [(1, 1), (3, 0)]
    assert "'replica decode' decodes them again" in summary.lines()[0]
    assert not list((decoded / "decoded").rglob(stale.name))
    hour_22 = raw_files(decoded, DAY1)[0]
    assert not list((decoded / "decoded").rglob(hour_22.name))
    assert decode_archive(decoded).decoded == 1
    after = decoded_tables(decoded)
    for name, table in tables.items():
        assert after[name].equals(table), name
    glob = f"{decoded}/decoded/orders/*/*.parquet"
    assert duckdb.sql(
        f"SELECT count(*) = count(DISTINCT (seq, idx)) FROM read_parquet('{glob}')"
    ).fetchall() == [(True,)]


def test_cli_compacts_closed_days_and_refuses_an_open_one(tmp_path: Path):
    three_days_ago = datetime.combine(
        datetime.now(UTC).date() - timedelta(days=3), datetime.min.time(), UTC
    )
    archive = build_archive(
        tmp_path / "archive", int(three_days_ago.timestamp() * 1000) + 22 * 3_600_000
    )
    days = [(three_days_ago + timedelta(days=n)).date().isoformat() for n in (0, 1)]
    today = datetime.now(UTC).date().isoformat()
    refused = run_replica("compact", archive, "--date", today)
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1
    assert f"replica: error: {today} cannot be compacted yet: it is open until" in refused.stderr
    result = run_replica("compact", archive)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == days
    assert lines[0].startswith(f"{days[0]}: 30 segments merged into 2, ")
    again = run_replica("compact", archive, "--quiet")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert verify(archive).ok


# ---- interrupted, watched, and taking turns --------------------------------------------------


def contents(root: Path) -> dict[str, bytes]:
    """Every file but the lock, by path: what two archives compacted alike must share."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".maintenance.lock"
    }


@pytest.fixture(scope="module")
def compacted_twin(decoded_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``decoded`` compacted in one uninterrupted run."""
    twin = Path(shutil.copytree(decoded_template, tmp_path_factory.mktemp("twin") / "archive"))
    compact(twin, now=AFTER)
    return twin


@pytest.mark.parametrize(("swapped", "settled"), [(0, 0), (5, 0), (None, 1)])  # None: all
def test_a_run_stopped_after_its_journal_is_finished_by_the_next(
    decoded: Path, compacted_twin: Path, swapped: int | None, settled: int
):
    staging, _ = stage_day(ArchiveLayout(decoded), DAY1)
    staging.publish()
    for swap in staging.swaps[:swapped]:
        swap_in(swap)
    for swap in staging.swaps[:settled]:
        settle(swap)
    with pytest.raises(ArchiveError, match=r"interrupted .* run 'replica compact .*' to finish"):
        decode_archive(decoded)
    summary = compact(decoded, now=AFTER)
    assert summary.finished == ["2026-11-20"]
    assert summary.lines()[0] == "finished the interrupted compaction of 2026-11-20"
    assert [day.day for day in summary.days] == [DAY2]
    assert contents(decoded) == contents(compacted_twin)


def test_a_killed_process_leaves_swaps_that_the_next_run_finishes(
    decoded: Path, compacted_twin: Path
):
    script = """
import os, signal, sys
from pathlib import Path
from replica.maintenance.compact import stage_day
from replica.maintenance.staging import swap_in
from replica.schemas.archive import ArchiveLayout
from tests.compactarchive import DAY1

staging, _ = stage_day(ArchiveLayout(Path(sys.argv[1])), DAY1)
staging.publish()
for swap in staging.swaps[:2]:
    swap_in(swap)
os.kill(os.getpid(), signal.SIGKILL)
"""
    killed = subprocess.run([sys.executable, "-c", script, str(decoded)], timeout=60)
    assert killed.returncode == -9
    assert compact(decoded, now=AFTER).finished == ["2026-11-20"]
    assert contents(decoded) == contents(compacted_twin)


def test_a_build_killed_before_its_journal_is_thrown_away(decoded: Path, compacted_twin: Path):
    stage_day(ArchiveLayout(decoded), DAY1)
    assert (decoded / ".compact" / "date=2026-11-20" / "raw" / ".staged").exists()
    summary = compact(decoded, now=AFTER)
    assert summary.finished == [] and [day.day for day in summary.days] == [DAY1, DAY2]
    assert contents(decoded) == contents(compacted_twin)


def test_a_segment_published_during_compaction_is_kept(archive: Path):
    staging, _ = stage_day(ArchiveLayout(archive), DAY1)
    hour = archive / "raw" / "date=2026-11-20" / "hour=23"
    late = hour / "00000000000482913005-00000000000482913005.parquet"
    shutil.copy(sorted(hour.iterdir())[0], late)  # any file: it must survive, whatever it is
    staging.commit()
    assert late.exists() and len(list(hour.iterdir())) == 2
    assert not (archive / ".compact").exists()


def counted_once(root: Path, tables: dict) -> None:
    """DuckDB's globs count every command and every decoded row once."""
    raw = f"read_parquet('{root}/raw/*/*/*.parquet', hive_partitioning = true)"
    assert duckdb.sql(f"SELECT count(*), count(DISTINCT seq) FROM {raw}").fetchall() == [
        (3000, 3000)
    ]
    counts = " UNION ALL ".join(
        f"SELECT '{name}', count(*) FROM read_parquet('{root}/decoded/{name}/*/*.parquet')"
        for name in tables
    )
    assert dict(duckdb.sql(counts).fetchall()) == {n: t.num_rows for n, t in tables.items()}


def test_readers_see_the_whole_archive_after_every_step(decoded: Path):
    tables = decoded_tables(decoded)
    layout = ArchiveLayout(decoded)
    staging, _ = stage_day(layout, DAY1)
    staging.publish()
    for swap in staging.swaps:
        swap_in(swap)
        counted_once(decoded, tables)
        if swap.live.parent.name == "raw":
            assert verify(decoded).ok
    settle(staging.swaps[0])
    counted_once(decoded, tables)
    finish(layout, staging.journal)
    counted_once(decoded, tables)
    assert verify(decoded).ok


def test_verify_while_compaction_runs_finds_no_half_state(archive: Path):
    """verify lists the segments and then reads them: when a swap removes a listed one, it
    lists again, so every report, taken at any moment of the compaction, is clean."""
    reports: list[Report] = []
    running = True
    looping = threading.Event()

    def verify_in_a_loop() -> None:
        while running or not reports:
            looping.set()
            reports.append(verify(archive))

    watcher = threading.Thread(target=verify_in_a_loop)
    watcher.start()
    looping.wait()
    try:
        compact(archive, now=AFTER)
    finally:
        running = False
        watcher.join()
    assert len(ArchiveLayout(archive).segments()) == 5
    for report in reports:
        assert report.ok, report.problems
        assert report.rows == reports[0].rows
    assert verify(archive).ok


def test_a_replay_across_a_compaction_emits_every_command_once(archive: Path, tmp_path: Path):
    untouched = Path(shutil.copytree(archive, tmp_path / "untouched"))
    expected = list(replica.open(untouched).replay())
    items = iter(replica.open(archive).replay())
    head = [next(items) for _ in range(100)]
    compact(archive, now=AFTER)
    assert len(ArchiveLayout(archive).segments()) == 5
    assert list(chain(head, items)) == expected
    assert raw_table(archive).equals(raw_table(untouched))


def test_decode_and_compact_take_turns(archive: Path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from schemas.archive import ArchiveLayout; "
            "from schemas.lock import maintenance_lock; "
            "lock = maintenance_lock(ArchiveLayout(Path(sys.argv[1])), 'replica compact'); "
            "lock.acquire(); print('held', flush=True); sys.stdin.read()",
            str(archive),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        refused = run_replica("decode", archive)
        with pytest.raises(ArchiveLocked, match="held by another replica compact"):
            compact(archive, now=AFTER)
    finally:
        holder.communicate("", timeout=60)
    held = f"held by replica compact (pid {holder.pid}); replica compact and replica decode"
    assert refused.returncode == 4 and held in refused.stderr
    assert not (archive / "decoded").exists()
    assert compact(archive, now=AFTER).days


def test_a_swap_that_fails_before_anything_moved_leaves_no_journal(archive: Path):
    staging, _ = stage_day(ArchiveLayout(archive), DAY1)
    live = archive / "raw" / "date=2026-11-20"
    live.rename(archive / "elsewhere")  # the exchange has nothing to exchange with
    with pytest.raises(ArchiveError, match=r"cannot swap .*date=2026-11-20"):
        staging.commit()
    assert ArchiveLayout(archive).compaction_journals() == []
    (archive / "elsewhere").rename(live)
    assert compact(archive, now=AFTER).finished == [] and verify(archive).ok
