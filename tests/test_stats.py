"""``replica stats``: every figure checked against the files and frames it summarises."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from replica.decoder.archive import decode_archive
from replica.replay.records import ReplayRecord
from replica.schemas.archive import ArchiveLayout
from replica.schemas.frames import command_frame

from replica.stats import archive_stats
from tests.conftest import replica
from tests.dayarchive import DAYS, build_days, day_files, spoil, write_gap
from tests.rawarchive import feed_rows, write_archive


def _frame_bytes(rows: list[dict]) -> int:
    fields = ("seq", "ts_ms", "ingest_ts_us", "publish_ts_us", "recv_ts_us", "raw")
    return sum(
        len(command_frame(ReplayRecord(*(row[f] for f in fields), 0.0)).encode()) for row in rows
    )


def test_stats_per_day_agree_with_the_files(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    rows = feed_rows()  # spans midnight, seqs 482911500-482911504 missing
    write_archive(root, rows, per_segment=500)
    decode_archive(root)
    days = archive_stats(root)

    assert [d.date.isoformat() for d in days] == ["2026-11-20", "2026-11-21"]
    assert sum(d.commands for d in days) == len(rows)
    assert [d.missing for d in days] == [5, 0]
    segments = ArchiveLayout(root).segments()
    for day in days:
        on_day = [r for r in rows if day.from_seq <= r["seq"] <= day.to_seq]
        assert day.frame_bytes == _frame_bytes(on_day)
        files = [s.path for s in segments if f"date={day.date.isoformat()}" in str(s.path)]
        assert day.raw_bytes == sum(path.stat().st_size for path in files)
        assert 0 < day.compression < 0.3
        decoded = root / "decoded" / "fills" / f"date={day.date.isoformat()}"
        assert day.decoded_rows["fills"] == sum(
            pq.read_metadata(p).num_rows for p in decoded.iterdir()
        )
        assert day.total_bytes >= day.raw_bytes + day.decoded_bytes
        assert archive_stats(root, [day.date]) == [day]  # from the day's own files


def test_stats_cli_table_and_json(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    write_archive(root, feed_rows(), per_segment=1000)
    table = replica("stats", root)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["2026-11-20", "1,719", "0", "5", "99.70%"] in [row[:5] for row in rows]
    as_json = replica("stats", root, "--json")
    assert as_json.returncode == 0, as_json.stderr
    days = json.loads(as_json.stdout)
    assert [(d["date"], d["commands"], d["decoded_rows"]) for d in days] == [
        ("2026-11-20", 1719, {}),
        ("2026-11-21", 1281, {}),
    ]


def test_stats_of_an_archive_without_commands_says_so(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    result = replica("stats", tmp_path)
    assert (result.returncode, result.stdout) == (0, f"{tmp_path}: no commands yet\n")


def test_dated_stats_give_the_full_runs_figures_from_that_day_alone(tmp_path: Path) -> None:
    archive = build_days(tmp_path / "archive", skip={80, 73})  # 73: the first seq of DAYS[2]
    write_gap(archive, DAYS[2], 73, 73)
    full = {day.date: day for day in archive_stats(archive)}
    assert full[DAYS[2]].missing == 2 and full[DAYS[2]].gap_records == 1
    for other in DAYS[:1] + DAYS[3:]:
        for path in day_files(archive, other):
            spoil(path)  # the neighbours' names are read, no file beyond the day
    assert archive_stats(archive, [DAYS[2]]) == [full[DAYS[2]]]
    assert archive_stats(archive, [DAYS[1]]) == [full[DAYS[1]]]
    result = replica("stats", archive, "--since", DAYS[1].isoformat(), "--json")
    assert result.returncode == 1 and "cannot read" in result.stderr  # DAYS[3] is spoilt
    result = replica("stats", archive, "--date", DAYS[2].isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    assert [d["commands"] for d in json.loads(result.stdout)] == [full[DAYS[2]].commands]
