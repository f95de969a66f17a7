"""``replica sql`` and ``replica duckdb``: the views, their timestamps, completeness, partition
pruning, and each output format, against real archives and real DuckDB."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replica.decoder.archive import decode_archive
from replica.schemas.archive import GAP_SCHEMA, ArchiveLayout
from replica.schemas.files import publish_parquet

from replica.sql import COMPLETENESS_SQL, connect, view_statements
from tests.conftest import replica
from tests.rawarchive import feed_rows, write_archive

MIDNIGHT_MS = int(datetime(2026, 11, 21, tzinfo=UTC).timestamp() * 1000)


def _rows(seqs: range, start_ms: int) -> list[dict]:
    return [
        {
            "seq": seq,
            "ts_ms": start_ms + 1000 * i,
            "ingest_ts_us": (start_ms + 1000 * i) * 1000 + 123,
            "publish_ts_us": (start_ms + 1000 * i) * 1000 + 456,
            "recv_ts_us": (start_ms + 1000 * i) * 1000 + 789,
            "raw": b"payload %d" % seq,
        }
        for i, seq in enumerate(seqs)
    ]


@pytest.fixture
def two_days(tmp_path: Path) -> Path:
    """Seqs 100-199 before midnight, a gap of 200-209 across it, 210-299 after, in segments of
    ten; and a gap record for the gap, as the recorder writes it."""
    root = tmp_path / "archive"
    write_archive(root, _rows(range(100, 200), MIDNIGHT_MS - 100_000), per_segment=10)
    write_archive(root, _rows(range(210, 300), MIDNIGHT_MS + 5_000), per_segment=10)
    gap = {
        "from_seq": [200],
        "to_seq": [209],
        "missing": [10],
        "cause": ["seq_jump"],
        "detected_ts_us": [MIDNIGHT_MS * 1000 + 5_000_789],
        "before_ts_ms": [MIDNIGHT_MS - 1_000],
        "after_ts_ms": [MIDNIGHT_MS + 5_000],
    }
    layout = ArchiveLayout(root)
    path = layout.unit_path(layout.gaps_dir, MIDNIGHT_MS + 5_000, "unit-1")
    publish_parquet(pa.Table.from_pydict(gap, schema=GAP_SCHEMA), path)
    return root


def test_views_keep_integers_and_add_utc_timestamps_to_the_microsecond(two_days: Path) -> None:
    with connect(two_days) as db:
        [row] = db.sql(
            "SELECT seq, ts_ms, ts_utc, ingest_ts_us, ingest_ts_utc, recv_ts_utc, date, hour "
            "FROM raw_cmds WHERE seq = 210"
        ).fetchall()
        gap = db.sql("SELECT from_seq, to_seq, before_ts_utc, detected_ts_utc FROM gaps").fetchall()
    assert row == (
        210,
        MIDNIGHT_MS + 5_000,
        datetime(2026, 11, 21, 0, 0, 5),
        (MIDNIGHT_MS + 5_000) * 1000 + 123,
        datetime(2026, 11, 21, 0, 0, 5, 123),
        datetime(2026, 11, 21, 0, 0, 5, 789),
        date(2026, 11, 21),
        0,
    )
    assert gap == [
        (200, 209, datetime(2026, 11, 20, 23, 59, 59), datetime(2026, 11, 21, 0, 0, 5, 789))
    ]


def test_completeness_per_day_counts_a_gap_across_midnight_against_the_day_it_ends(
    two_days: Path,
) -> None:
    with connect(two_days) as db:
        days = db.sql("SELECT * FROM completeness").fetchall()
    assert days == [
        (date(2026, 11, 20), 100, 199, 100, 0, 0, 100.0),
        (date(2026, 11, 21), 200, 299, 90, 0, 10, 90.0),
    ]


def _files_read(db: duckdb.DuckDBPyConnection, query: str) -> int:
    plan = "\n".join(
        str(cell) for row in db.sql("EXPLAIN ANALYZE " + query).fetchall() for cell in row
    )
    return sum(int(n) for n in re.findall(r"Total Files Read: (\d+)", plan))


def test_a_query_on_one_day_reads_only_that_days_files(two_days: Path) -> None:
    with connect(two_days) as db:
        every_file = _files_read(db, "SELECT count(*) FROM raw_cmds")
        one_day = _files_read(db, "SELECT count(*) FROM raw_cmds WHERE date = '2026-11-21'")
        one_hour = _files_read(
            db, "SELECT count(*) FROM raw_cmds WHERE date = '2026-11-20' AND hour = 23"
        )
    assert (every_file, one_day, one_hour) == (19, 9, 10)


def test_decoded_tables_are_views_too_and_an_archive_without_gaps_has_an_empty_gaps_view(
    tmp_path: Path,
) -> None:
    root = tmp_path / "archive"
    write_archive(root, feed_rows(), per_segment=1000)
    decode_archive(root)
    with connect(root) as db:
        tables = {name for (name,) in db.sql("SHOW TABLES").fetchall()}
        assert {"raw_cmds", "gaps", "quarantine", "completeness", "orders", "fills"} <= tables
        assert "_segments" not in tables
        assert db.sql("SELECT count(*) FROM gaps").fetchall() == [(0,)]
        assert "from_seq" in db.sql("SELECT * FROM gaps").columns
        [fills] = db.sql(
            "SELECT count(*), count(DISTINCT r.date), min(time_utc) FROM fills f "
            "JOIN raw_cmds r USING (seq)"
        ).fetchall()
        assert fills[0] > 0 and fills[1] == 2 and isinstance(fills[2], datetime)


def test_every_decoded_table_is_a_view_before_the_first_decode(tmp_path: Path) -> None:
    """A nightly count of fills must read 0 on an archive never decoded, not fail."""
    root = tmp_path / "archive"
    write_archive(root, feed_rows(), per_segment=1000)
    result = replica("sql", str(root), "SELECT count(*) AS n FROM fills", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["n", "0"]
    with connect(root) as db:
        tables = {name for (name,) in db.sql("SHOW TABLES").fetchall()}
        assert {"orders", "cancels", "fills", "oracle", "blocks", "actions", "undecoded"} <= tables
        columns = db.sql("SELECT * FROM orders").columns
        assert {"seq", "oid", "px", "time_ms", "time_utc", "date"} <= set(columns)


def test_print_views_and_write_a_duckdb_database_another_client_opens(
    two_days: Path, tmp_path: Path
) -> None:
    printed = replica("sql", two_days, "--views")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("CREATE VIEW") == len(view_statements(two_days))
    fresh = duckdb.connect()
    fresh.execute(printed.stdout)
    assert fresh.sql("SELECT count(*) FROM raw_cmds").fetchall() == [(190,)]

    database = tmp_path / "archive.duckdb"
    written = replica("duckdb", two_days, database)
    assert written.returncode == 0, written.stderr
    assert "raw_cmds" in written.stdout and "completeness" in written.stdout
    with duckdb.connect(str(database), read_only=True) as db:
        assert db.sql("SELECT sum(missing) FROM completeness").fetchall() == [(10,)]


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "parquet"])
def test_each_output_format_to_a_file_and_to_stdout(
    two_days: Path, tmp_path: Path, fmt: str
) -> None:
    query = "SELECT seq, ingest_ts_utc FROM raw_cmds WHERE seq IN (100, 299) ORDER BY seq"
    output = tmp_path / f"result.{fmt}"
    to_file = replica("sql", two_days, query, "--format", fmt, "--output", output)
    assert to_file.returncode == 0 and to_file.stdout == "", to_file.stderr
    if fmt == "parquet":
        assert pq.read_table(output).column("seq").to_pylist() == [100, 299]
        return
    to_stdout = replica("sql", two_days, query, "--format", fmt)
    assert to_stdout.stdout == output.read_text()
    lines = to_stdout.stdout.splitlines()
    if fmt == "csv":
        assert lines == [
            "seq,ingest_ts_utc",
            "100,2026-11-20 23:58:20.000123",
            "299,2026-11-21 00:01:34.000123",
        ]
    elif fmt == "json":
        assert [json.loads(line)["seq"] for line in lines] == [100, 299]
    else:
        assert lines[0].split() == ["seq", "ingest_ts_utc"] and lines[-1] == "(2 rows)"


def test_stdout_appended_to_a_log_keeps_what_the_log_held(two_days: Path, tmp_path: Path) -> None:
    log = tmp_path / "cron.log"
    log.write_text("earlier line\n")
    with log.open("a") as sink:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "replica",
                "sql",
                str(two_days),
                "SELECT 1 AS one",
                "--format",
                "csv",
            ],
            stdout=sink,
            check=True,
        )
    assert log.read_text() == "earlier line\none\n1\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["SELECT * FROM nope"], 1, "the query failed: Catalog Error"),
        (["SELECT 1", "--format", "parquet"], 2, "--format parquet needs --output FILE"),
        ([], 2, "give a QUERY"),
    ],
)
def test_bad_queries_are_one_line_errors(
    two_days: Path, args: list[str], code: int, message: str
) -> None:
    result = replica("sql", two_days, *args)
    assert result.returncode == code
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_output_inside_the_archive_is_refused_and_nothing_is_written(two_days: Path) -> None:
    before = sorted(two_days.rglob("*"))
    result = replica("sql", two_days, "SELECT 1", "--output", two_days / "raw" / "x.csv")
    assert result.returncode == 2 and "inside the archive" in result.stderr
    assert sorted(two_days.rglob("*")) == before


def test_a_completeness_check_fails_the_command_and_days_are_utc_days(two_days: Path) -> None:
    check = (
        "SELECT CASE WHEN min(percent_complete) < 99.9 THEN error('incomplete: ' || "
        "min(percent_complete) || '%') END FROM completeness WHERE date >= '2026-11-20'"
    )
    failed = replica("sql", two_days, check, "--format", "csv")
    assert failed.returncode == 1
    assert (
        failed.stderr
        == "replica: error: the query failed: Invalid Input Error: incomplete: 90.0%\n"
    )
    far_east = subprocess.run(
        [
            sys.executable,
            "-m",
            "replica",
            "sql",
            str(two_days),
            "SELECT current_date",
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "Pacific/Kiritimati"},
    )
    assert far_east.stdout.splitlines()[1] == datetime.now(UTC).date().isoformat()


def test_a_query_gets_the_views_it_names_and_a_query_naming_none_gets_all(two_days: Path) -> None:
    def defined(query: str) -> set[str]:
        with connect(two_days, query=query) as db:
            return {name for (name,) in db.sql("SHOW TABLES").fetchall()}

    assert defined("SELECT count(*) FROM gaps") == {"gaps"}
    assert defined("SELECT * FROM Completeness") == {"completeness", "raw_cmds", "heals"}
    every = {"raw_cmds", "gaps", "quarantine", "completeness", "orders", "fills", "undecoded"}
    assert every <= defined("SHOW TABLES")


def test_a_day_missing_one_seq_in_millions_is_not_shown_complete() -> None:
    with duckdb.connect() as db:
        db.execute(
            "CREATE TABLE raw_cmds AS SELECT range AS seq, DATE '2026-11-20' AS date "
            "FROM range(2000000) WHERE range <> 1234"
        )
        db.execute("CREATE TABLE heals AS SELECT DATE '2026-11-20' AS date, 0 AS healed LIMIT 0")
        [(missing, percent)] = db.sql(
            f"SELECT missing, percent_complete FROM ({COMPLETENESS_SQL})"
        ).fetchall()
    assert (missing, percent) == (1, 99.9999)
