"""``replica`` as a cron job runs it: real subprocesses, exit codes, stdout and stderr.

Covers usage errors (one line, exit 2), authentication refused (3), a held archive (4), clean
ends by SIGTERM, --duration and --until (0), the status line and JSON summary, the key file,
``gaps`` and ``verify`` (including the problems verify must find), and the documented --help.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from replica.schemas.archive import ArchiveLayout
from replica.schemas.lock import ArchiveLock

from tests.conftest import PATIENCE_S, reached, record, replica
from tests.feedserver import Live, Reject, ScriptedFeed, Send
from tests.rawarchive import write_segment

SECRET = "ak_live_CLI_SECRET_42"
CERTS = Path(__file__).resolve().parent / "certs"


def start_recording(*args: str | Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "replica", "record", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def summary_of(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ws://example.com/", "A"], "plaintext ws://; use wss://"),
        (["http://127.0.0.1:9/", "A"], "must be ws://HOST or wss://HOST"),
        ([f"wss://feed.example/?api_key={SECRET}", "A"], "must not carry api_key"),
        (["wss://user:pw@feed.example/", "A"], "must not carry credentials"),
        (["ws://127.0.0.1:9", "A", "--duration", "5x"], "'5x' is not a duration"),
        (["ws://127.0.0.1:9", "A", "--duration", "0s"], "must be longer than zero"),
        (["ws://127.0.0.1:9", "A", "--until", "2020-01-01T00:00Z"], "is already past"),
        (["ws://127.0.0.1:9", "A", "--until", "2030-01-01T00:00"], "has no time zone"),
        (["ws://127.0.0.1:9", "A", "--until", "tomorrow"], "not an ISO 8601 time"),
        (["ws://127.0.0.1:9", "A", "--api-key-env", "REPLICA_TEST_UNSET"], "is not set"),
        (["ws://127.0.0.1:9", "A", "--auth", "query"], "needs an API key"),
        (["ws://127.0.0.1:9", "A", "--segment-rows", "0"], "--segment-rows"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = replica("record", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("replica: error: ") and result.stderr.count("\n") == 1
    assert SECRET not in result.stderr + result.stdout


def test_refused_key_exits_3_with_a_summary_and_no_secret(tmp_path: Path) -> None:
    with ScriptedFeed([Reject(401)]) as feed:
        result = replica("record", feed.url, tmp_path / "a", env={"REPLICA_API_KEY": SECRET})
        assert feed.seen.headers[0]["x-api-key"] == SECRET
    assert result.returncode == 3
    assert "authentication was refused" in result.stderr and "HTTP 401" in result.stderr
    summary = summary_of(result.stdout)
    assert (summary["exit_code"], summary["ended_by"]) == (3, "AuthRefused")
    assert SECRET not in result.stdout + result.stderr


def test_a_held_archive_exits_4(tmp_path: Path) -> None:
    lock = ArchiveLock(ArchiveLayout(tmp_path).lock_path)
    lock.acquire()
    try:
        result = replica("record", "ws://127.0.0.1:9", tmp_path)
    finally:
        lock.release()
    assert result.returncode == 4
    assert f"held by another recorder (pid {os.getpid()})" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_seals_everything_and_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    archive = tmp_path / "a"
    with ScriptedFeed([Live(rate=1000)]) as feed:
        proc = start_recording(
            feed.url, archive, "--status-seconds", "0.1", "--segment-seconds", "0.3"
        )
        layout = ArchiveLayout(archive)
        spool = layout.spool_dir
        wait_for(lambda: layout.segments(), "a sealed segment")
        wait_for(lambda: sum(p.stat().st_size for p in spool.glob("*.wal")) > 2000, "frames")
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, stderr
    summary = summary_of(stdout)
    assert summary["ended_by"] == signum.name and summary["appended"] > 0
    assert "msg/s | last seq" in stderr
    assert not list(spool.glob("*.wal")), "nothing left unsealed"
    assert replica("verify", archive).returncode == 0


@pytest.mark.parametrize("window", ["duration", "until"])
def test_a_cron_window_ends_the_run_cleanly(tmp_path: Path, window: str) -> None:
    end = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ["--duration", "1s"] if window == "duration" else ["--until", end]
    with ScriptedFeed([Live(rate=500)]) as feed:
        result = replica("record", feed.url, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    summary = summary_of(result.stdout)
    assert summary["ended_by"] == "deadline" and summary["appended"] > 0
    assert summary["last_seq"] - summary["first_seq"] + 1 == summary["appended"]


def test_wss_feed_with_header_auth_over_tls(tmp_path: Path) -> None:
    """The live feed is wss:// only: a committed self-signed certificate stands in for its CA."""
    cert, key = CERTS / "localhost.pem", CERTS / "localhost-key.pem"
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with ScriptedFeed([Send.cmds(0, 4)], api_key=SECRET, tls=tls) as feed:
        assert feed.url.startswith("wss://")
        env = {"REPLICA_API_KEY": SECRET, "SSL_CERT_FILE": str(cert)}
        result = replica("record", feed.url, tmp_path / "a", "--duration", "1s", env=env)
        untrusted = replica(
            "record", feed.url, tmp_path / "b", "--duration", "1s", env={"REPLICA_API_KEY": SECRET}
        )
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout)["appended"] == 5
    assert summary_of(untrusted.stdout)["appended"] == 0
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, "an unverified peer is refused"


def test_the_key_file_is_used_and_a_loose_one_is_warned_about(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    key_file.chmod(0o644)
    with ScriptedFeed([Send.cmds(0, 4)], api_key=SECRET) as feed:
        result = replica(
            "record", feed.url, tmp_path / "a", "--api-key-file", key_file, "--duration", "1s"
        )
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout)["appended"] == 5
    assert "readable by other users" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_gaps_lists_missing_ranges_as_a_table_and_as_json(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 9), Send.cmds(15, 19), Send.cmds(30, 30)]) as feed:
        record(feed.url, tmp_path, reached(30))
    table = replica("gaps", tmp_path)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["from_seq", "to_seq", "missing", "cause"]
    rows = [line for line in lines[1:-1] if line.split()[0].isdigit()]
    assert [row.split()[:4] for row in rows] == [
        ["10", "14", "5", "jump"],
        ["20", "29", "10", "jump"],
    ]
    assert "2026-11-20 00:00:00.090 and 2026-11-20 00:00:00.150" in rows[0]
    assert lines[-1] == "2 gaps, 15 seqs missing"
    gaps = json.loads(replica("gaps", tmp_path, "--json").stdout)
    assert [(g["from_seq"], g["to_seq"], g["cause"]) for g in gaps] == [
        (10, 14, "jump"),
        (20, 29, "jump"),
    ]


def test_verify_passes_a_good_archive_and_names_every_problem(tmp_path: Path) -> None:
    good = tmp_path / "good"
    with ScriptedFeed([Send.cmds(0, 9), Send.cmds(15, 39)]) as feed:
        record(feed.url, good, reached(39), segment_rows=10)
    result = replica("verify", good)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("1 gap records (5 seqs missing): ok")

    def broken(name: str) -> Path:
        return Path(shutil.copytree(good, tmp_path / name))

    segments = ArchiveLayout(good).segments()
    truncated = broken("truncated")
    victim = truncated / segments[1].path.relative_to(good)
    victim.write_bytes(victim.read_bytes()[:100])
    no_gaps = broken("no_gaps")
    shutil.rmtree(no_gaps / "gaps")
    overlapping = broken("overlapping")
    shutil.copy(
        overlapping / segments[1].path.relative_to(good),
        overlapping
        / segments[1]
        .path.relative_to(good)
        .with_name(f"{segments[1].first_seq + 1:020d}-{segments[1].last_seq:020d}.parquet"),
    )
    wrong_schema = broken("wrong_schema")
    victim = wrong_schema / segments[0].path.relative_to(good)
    pq.write_table(pq.read_table(victim).drop_columns(["recv_ts_us"]), victim)
    bad_quarantine = broken("bad_quarantine")
    (bad_quarantine / "quarantine" / "date=2026-11-20").mkdir(parents=True)
    (bad_quarantine / "quarantine" / "date=2026-11-20" / "x.parquet").write_text("not parquet")
    for archive, problem in [
        (truncated, "does not read"),
        (wrong_schema, "schema is [seq int64 not null, ts_ms int64 not null, ingest_ts_us"),
        (bad_quarantine, "x.parquet: does not read"),
        (no_gaps, "seqs 10-14 are missing and no gap record says so"),
        (overlapping, "not those its name says"),  # and no overlap: inside a larger one
        (overlapping, "1 segments lie inside a larger one"),
    ]:
        result = replica("verify", archive)
        assert result.returncode == 1, (archive, result.stdout)
        assert problem in result.stdout


def test_a_recorded_gap_filled_later_is_a_note_not_a_problem(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 9), Send.cmds(15, 19)]) as feed:
        record(feed.url, tmp_path, reached(19), segment_rows=10)
    [before] = pq.read_table(ArchiveLayout(tmp_path).segments()[0].path).slice(9).to_pylist()
    write_segment(tmp_path, [{**before, "seq": seq, "raw": b"late"} for seq in range(10, 15)])
    result = replica("verify", tmp_path)
    assert result.returncode == 0, result.stdout
    assert "seqs 10-14 were backfilled after their gap was recorded" in result.stdout


def test_an_unusable_archive_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "raw").write_text("a file where a directory belongs")
    result = replica("record", "ws://127.0.0.1:9", tmp_path, "--duration", "1s")
    assert result.returncode == 1
    assert result.stderr.startswith(f"replica: error: cannot use the archive {tmp_path}")
    assert summary_of(result.stdout)["ended_by"] == "ArchiveError"


def test_demo_runs_as_the_readme_says(tmp_path: Path) -> None:
    (tmp_path / "replica-demo").mkdir()  # an empty directory is as good as none
    result = subprocess.run(
        [sys.executable, "-m", "replica", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "recorded 3000 new commands" in result.stdout
    assert "gap: seqs 482911500-482911504 missing (5, cause jump)" in result.stdout
    assert "verify: 2 segments, 3000 commands, ok" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["2026-11-21", "0", "1281", "482911724"] in [row[:4] for row in rows]  # per hour
    assert ["2026-11-20", "482910000", "482911723", "1719", "0", "5", "99.7099"] in rows
    assert "decode: 2 segments into replica-demo/decoded/<table>: actions 784" in result.stdout
    assert "replay: seqs 482911496-482911509 at speed 10" in result.stdout
    assert "  gap: seqs 482911500-482911504 missing" in result.stdout
    assert "seq 482911507  ts_ms 1795219185209  944 B  -> actions 1, blocks 1" in result.stdout
    assert replica("verify", tmp_path / "replica-demo").returncode == 0
    again = replica("demo", tmp_path / "replica-demo")
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "is not empty" in again.stderr


@pytest.mark.parametrize("content", ["raw/", "gaps/", "spool/", "decoded/", ".lock", "notes.txt"])
def test_demo_refuses_a_directory_that_holds_anything(tmp_path: Path, content: str) -> None:
    """The demo never adds its fixture commands to an archive, or its files to anything else."""
    target = tmp_path / "existing"
    entry = target / content.rstrip("/")
    if content.endswith("/"):
        (entry / "date=2026-11-20").mkdir(parents=True)
    else:
        target.mkdir()
        entry.write_text("kept")
    before = sorted(target.rglob("*"))
    result = replica("demo", target)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"replica: error: demo directory {target} is not empty (it holds {entry.name}); "
        "give a new or empty directory\n"
    )
    assert sorted(target.rglob("*")) == before


def test_verify_and_gaps_name_a_missing_archive(tmp_path: Path) -> None:
    for command in ("verify", "gaps"):
        result = replica(command, tmp_path / "nope")
        assert result.returncode == 2
        assert "does not exist" in result.stderr and result.stderr.count("\n") == 1


def test_help_documents_every_record_option() -> None:
    result = replica("record", "--help")
    assert result.returncode == 0
    for option in (
        "--api-key-env",
        "--api-key-file",
        "--auth",
        "--duration",
        "--until",
        "--segment-seconds",
        "--segment-rows",
        "--status-seconds",
    ):
        assert option in result.stdout
    assert "3 authentication refused" in " ".join(result.stdout.split())
    assert {"record", "gaps", "verify", "demo"} <= set(replica("--help").stdout.split())


def test_the_command_list_loads_neither_rich_nor_a_stage() -> None:
    """``replica --help`` stays fast: rich and the stages load when a command runs."""
    probe = (
        "import sys; import replica.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'duckdb', 'pyarrow')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
