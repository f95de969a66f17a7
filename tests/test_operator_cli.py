"""Operator paths through the real CLI: a query as a nightly job passes it, Ctrl-C on a long
command, and the quiet mistakes of replay and sql made loud (subprocesses, exit codes, stderr).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PATIENCE_S, replica
from tests.rawarchive import feed_rows, write_archive
from tests.replayarchives import FEED_FIRST_SEQ, FEED_LAST_SEQ, FEED_LINES, record_fixture_feed

HOLDS = f"it holds seqs {FEED_FIRST_SEQ}-{FEED_LAST_SEQ} in the UTC hours 2026-11-20T23 to "


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_fixture_feed(tmp_path_factory.mktemp("operator") / "archive")


# ---- a query as check.sql holds it ----------------------------------------------------------

CHECK = "-- check.sql: one row\nSELECT count(*) AS n FROM raw_cmds\n"


def test_a_query_that_starts_with_a_comment_is_a_query(archive: Path) -> None:
    result = replica("sql", archive, CHECK, "--format", "csv")
    assert (result.returncode, result.stdout, result.stderr) == (0, "n\n3000\n", "")
    after = replica("sql", archive, "--format", "csv", CHECK)
    assert (after.returncode, after.stdout) == (0, "n\n3000\n")


def test_a_query_from_a_file_or_from_stdin(archive: Path, tmp_path: Path) -> None:
    (tmp_path / "check.sql").write_text(CHECK)
    from_file = replica("sql", archive, "-f", tmp_path / "check.sql", "--format", "csv")
    assert (from_file.returncode, from_file.stdout) == (0, "n\n3000\n"), from_file.stderr
    from_stdin = subprocess.run(
        [sys.executable, "-m", "replica", "sql", archive, "-", "--format", "csv"],
        input=CHECK,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (from_stdin.returncode, from_stdin.stdout) == (0, "n\n3000\n"), from_stdin.stderr
    both = replica("sql", archive, "SELECT 1", "-f", tmp_path / "check.sql")
    assert (both.returncode, both.stderr) == (
        2,
        "replica: error: give the query as QUERY or with -f FILE, not both\n",
    )


# ---- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_ends_a_paced_replay_on_a_whole_line_with_exit_130(archive: Path) -> None:
    """At speed 0.001 the second command is due 52 s after the first: SIGINT lands in the wait."""
    with subprocess.Popen(
        [sys.executable, "-m", "replica", "replay", archive, "--speed", "0.001"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout.readline() == FEED_LINES[0] + "\n"
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=PATIENCE_S)
    assert (process.returncode, rest) == (130, "")
    assert stderr == (
        f"replica: interrupted after 1 command, seq {FEED_FIRST_SEQ} "
        f"(--from-seq {FEED_FIRST_SEQ + 1} resumes)\n"
    )


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_ends_decode_with_exit_130_and_a_second_run_resumes(
    tmp_path: Path, jobs: str
) -> None:
    archive = tmp_path / "archive"
    segments = len(write_archive(archive, feed_rows(), per_segment=20))
    markers = archive / "decoded" / "_segments"
    with subprocess.Popen(
        [sys.executable, "-m", "replica", "decode", archive, "--jobs", jobs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + PATIENCE_S
        while not any(markers.glob("date=*/*.parquet")):  # a segment is decoded
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no segment was decoded in time"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=PATIENCE_S)
    kept = len(list(markers.glob("date=*/*.parquet")))
    assert (process.returncode, stdout) == (130, "")
    assert stderr == (
        f"replica: interrupted after decoding {kept} of {segments} segments: those are kept, "
        f"and 'replica decode {archive}' again decodes the other {segments - kept}\n"
    )
    assert kept < segments, "decode finished before the signal: make the archive larger"
    again = replica("decode", archive, timeout=PATIENCE_S * 6)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(
        f"decoded {segments - kept} of {segments} segments ({kept} already up to date, 0 failed)"
    )


# ---- quiet mistakes in replay ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("selection", "named"),
    [
        (["--start", "2026-11-22"], "--start 2026-11-22T00:00:00+00:00"),
        (["--from-seq", str(FEED_LAST_SEQ + 1)], f"--from-seq {FEED_LAST_SEQ + 1}"),
    ],
)
@pytest.mark.parametrize("digest", [[], ["--digest"]])
def test_an_empty_selection_says_so(
    archive: Path, selection: list[str], named: str, digest: list[str]
) -> None:
    result = replica("replay", archive, *selection, *digest)
    nothing = f"sha256:{hashlib.sha256().hexdigest()} 0 commands\n" if digest else ""
    assert (result.returncode, result.stdout) == (0, nothing)
    assert result.stderr == (
        f"replica: warning: no command of {archive} is in the selection ({named}); "
        f"{HOLDS}2026-11-21T00\n"
    )


def test_digest_with_a_speed_is_bad_usage(archive: Path) -> None:
    result = replica("replay", archive, "--digest", "--speed", "10")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "replica: error: --digest reads as fast as it can; --speed paces frames, drop one\n"
    )


def test_verify_checks_the_digest_range_before_reading_the_archive(archive: Path) -> None:
    result = replica("verify", archive, "--digest", "--from-seq", "5", "--to-seq", "3")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "replica: error: from_seq 5 is above to_seq 3\n"


def test_a_date_alone_is_midnight_utc(archive: Path) -> None:
    by_date = replica("replay", archive, "--start", "2026-11-21", "--digest")
    by_time = replica("replay", archive, "--start", "2026-11-21T00:00Z", "--digest")
    assert (by_date.returncode, by_date.stderr) == (0, ""), by_date.stderr
    assert by_date.stdout == by_time.stdout
    assert by_date.stdout.endswith(" 1281 commands\n")  # the demo feed's 2026-11-21


# ---- quiet mistakes in sql ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_output_into_a_missing_directory_names_that_directory(
    archive: Path, tmp_path: Path, fmt: str
) -> None:
    output = tmp_path / "missing" / "result.csv"
    result = replica("sql", archive, "SELECT 1", "--format", fmt, "--output", output)
    assert result.returncode == 2
    assert result.stderr == (
        f"replica: error: --output {output}: directory {output.parent} does not exist\n"
    )


def test_a_database_file_in_a_missing_directory_names_that_directory(
    archive: Path, tmp_path: Path
) -> None:
    database = tmp_path / "missing" / "archive.duckdb"
    result = replica("duckdb", archive, database)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"replica: error: {database}: directory {database.parent} does not exist\n"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '{target}'",
        'COPY (SELECT 1 AS "to") TO "{target}" (FORMAT csv)',
        "COPY (SELECT 1) TO $${target}$$",
        "SELECT 1; EXPORT DATABASE '{target}'",
    ],
)
def test_a_query_that_writes_inside_the_archive_is_refused(archive: Path, statement: str) -> None:
    before = sorted(archive.rglob("*"))
    target = archive / "raw" / "copied.csv"
    result = replica("sql", archive, statement.format(target=target))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"replica: error: the query writes '{target}', inside the archive; write it elsewhere\n"
    )
    assert sorted(archive.rglob("*")) == before


def test_a_query_that_writes_elsewhere_or_reads_the_archive_runs(
    archive: Path, tmp_path: Path
) -> None:
    target = tmp_path / "copied.csv"
    segment = next(archive.glob("raw/date=*/hour=*/*.parquet"))
    result = replica(
        "sql", archive, f"COPY (SELECT count(*) AS n FROM '{segment}') TO '{target}' (HEADER)"
    )
    assert result.returncode == 0, result.stderr
    assert target.read_text().splitlines()[0] == "n"
