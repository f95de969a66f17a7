"""The recorder against a real loopback Disk-Sync server: every case the feed docs describe.

Gaps, duplicates and conflicts, malformed frames, each close code, a dropped connection, HTTP
401/403, resuming an archive, one recorder per archive, segment sealing, and the API key never
leaving the connection. Assertions read the real Parquet files (and DuckDB for the SQL view).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from replica.recorder.policy import BackoffPolicy
from replica.recorder.recorder import Recorder
from replica.recorder.writers import MAX_BACKLOG_UNITS
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveLocked, AuthRefused

import replica
from replica.maintenance.verify import read_gaps, verify
from tests.conftest import PATIENCE_S, raw_rows, reached, record, table_rows
from tests.feedserver import (
    BASE_TS_MS,
    Close,
    Drop,
    Freeze,
    Redirect,
    Reject,
    ScriptedFeed,
    Send,
    frame,
    payload,
)

MAX_FRAME_BYTES = 64 * 2**20  # the README's limit on one frame


def assert_verified(archive: Path) -> None:
    report = verify(archive)
    assert report.ok, report.problems


def test_clean_stream_is_archived_exactly(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 99)]) as feed:
        began_us = time.time_ns() // 1000
        summary, _ = record(feed.url, tmp_path, reached(99))
        ended_us = time.time_ns() // 1000
    rows = raw_rows(tmp_path)
    assert [r["seq"] for r in rows] == list(range(100))
    assert all(r["raw"] == payload(r["seq"]) for r in rows)
    assert rows[7]["ts_ms"] == BASE_TS_MS + 70
    assert rows[7]["ingest_ts_us"] == (BASE_TS_MS + 70) * 1000 + 300
    assert rows[7]["publish_ts_us"] == (BASE_TS_MS + 70) * 1000 + 320
    received = [r["recv_ts_us"] for r in rows]  # the recorder's wall clock, not the feed's
    assert began_us <= received[0] and received[-1] <= ended_us, (began_us, received, ended_us)
    assert received == sorted(received)
    assert (summary.appended, summary.first_seq, summary.last_seq) == (100, 0, 99)
    assert (summary.gaps, summary.duplicates, summary.quarantined) == (0, 0, 0)
    assert summary.exit_code == 0 and summary.ended_by == "stop"
    assert_verified(tmp_path)
    assert not list(ArchiveLayout(tmp_path).spool_dir.glob("*")), "a clean stop leaves no spool"


def test_duckdb_reads_every_table_with_one_glob(tmp_path: Path) -> None:
    script = [Send.cmds(0, 9), Send(("not json",)), Send.cmds(12, 14)]
    with ScriptedFeed(script) as feed:
        record(feed.url, tmp_path, reached(14))
    raw = duckdb.sql(
        f"SELECT count(*), min(seq), max(seq), any_value(hour), any_value(date)::VARCHAR "
        f"FROM read_parquet('{tmp_path}/raw/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert raw == [(13, 0, 14, "00", "2026-11-20")]
    gaps = duckdb.sql(f"SELECT from_seq, to_seq, cause FROM '{tmp_path}/gaps/*/*.parquet'")
    assert gaps.fetchall() == [(10, 11, "jump")]
    kinds = duckdb.sql(f"SELECT kind FROM '{tmp_path}/quarantine/*/*.parquet'").fetchall()
    assert kinds == [("not_json",)]


def test_gap_within_a_connection_is_a_jump(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 9), Send.cmds(15, 19)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(19))
    [gap] = read_gaps(tmp_path)
    assert (gap.from_seq, gap.to_seq, gap.missing, gap.cause) == (10, 14, 5, "jump")
    assert gap.before_ts_ms == BASE_TS_MS + 90 and gap.after_ts_ms == BASE_TS_MS + 150
    assert (summary.gaps, summary.missing) == (1, 5)
    assert_verified(tmp_path)


def test_duplicates_are_dropped_and_conflicts_quarantined(tmp_path: Path) -> None:
    replayed = Send((frame(5), frame(6), frame(7, raw=b"something else"), frame(8), frame(9)))
    with ScriptedFeed([Send.cmds(0, 9), replayed, Send.cmds(10, 12)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(12))
    rows = raw_rows(tmp_path)
    assert [r["seq"] for r in rows] == list(range(13))
    assert rows[7]["raw"] == payload(7), "the archived payload is never replaced"
    assert (summary.duplicates, summary.conflicts) == (5, 1)
    [conflict] = table_rows(tmp_path / "quarantine")
    assert (conflict["kind"], conflict["seq"]) == ("conflict", 7)
    assert "different payload" in conflict["reason"]
    assert b"something else".hex() in conflict["frame"]
    assert_verified(tmp_path)


def test_bad_frames_are_quarantined_and_recording_goes_on(tmp_path: Path) -> None:
    bad = (
        "{not json",
        "[1, 2]",
        '{"type": "heartbeat"}',
        '{"type": "replica_cmd", "seq": 3}',
        frame(3).replace('"seq": 3', '"seq": "3"'),
        frame(3).replace('"raw_hex": "', '"raw_hex": "a'),
        frame(3).replace('"raw_hex": "', '"raw_hex": "zz'),
        b"\x00\x01binary",
        "x" * 100_000,
    )
    with ScriptedFeed([Send.cmds(0, 2), Send(bad), Send.cmds(3, 5)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(5))
    assert [r["seq"] for r in raw_rows(tmp_path)] == list(range(6))
    rows = table_rows(tmp_path / "quarantine")
    assert [r["kind"] for r in rows] == [
        "not_json",
        "not_object",
        "unknown_type",
        "missing_field",
        "bad_field",
        "bad_hex",
        "bad_hex",
        "binary",
        "not_json",
    ]
    assert rows[0]["frame"] == "{not json" and rows[0]["frame_bytes"] == 9
    assert rows[5]["reason"] == "raw_hex has an odd length (19)"
    assert rows[7]["frame"] == "0x" + b"\x00\x01binary".hex()
    assert len(rows[8]["frame"]) == 65_536 and rows[8]["frame_bytes"] == 100_000
    assert all(r["recv_ts_us"] > 0 and r["reason"] for r in rows)
    assert summary.quarantined == len(bad)
    assert_verified(tmp_path)


@pytest.mark.parametrize(
    ("compression", "reason"),
    [
        (None, f"frame of {MAX_FRAME_BYTES + 1} bytes is over the {MAX_FRAME_BYTES} byte limit"),
        ("deflate", f"compressed frame inflates to more than the {MAX_FRAME_BYTES} byte limit"),
    ],
)
def test_a_frame_over_the_size_limit_is_quarantined_by_size_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, compression: str | None, reason: str
) -> None:
    huge = "x" * (MAX_FRAME_BYTES + 1)
    script = [Send.cmds(0, 2), Send((huge,))]
    with ScriptedFeed(script, [Send.cmds(3, 5)], compression=compression) as feed:
        summary, _ = record(feed.url, tmp_path, reached(5))
    [row] = table_rows(tmp_path / "quarantine")
    assert (row["kind"], row["frame"], row["seq"]) == ("too_big", "", None)
    assert row["frame_bytes"] >= MAX_FRAME_BYTES
    assert row["reason"].startswith(reason)
    assert summary.quarantined == 1 and summary.appended == 6 and summary.connections == 2
    assert f"connection ended ({reason}; its content was not read" in caplog.text
    assert "quarantined its size" in caplog.text
    assert_verified(tmp_path)


def test_a_flood_of_bad_frames_holds_bounded_memory_and_every_one_is_counted(
    tmp_path: Path,
) -> None:
    same = "{" + "x" * 65_535  # 64 KiB, not JSON
    distinct = tuple(f"{{{i:05d}" + "y" * 65_530 for i in range(300))
    flood = Send((same,) * 1200 + distinct)
    with ScriptedFeed([Send.cmds(0, 1), flood, Send.cmds(2, 3)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(3))
    assert summary.quarantined == 1500 and summary.appended == 4
    files = ArchiveLayout(tmp_path).table_files(tmp_path / "quarantine")
    assert len(files) > 1, "the unit was sealed early, before its quarantine grew past the bound"
    rows = 0
    for path in files:
        unit = pq.read_table(path).to_pylist()
        rows += len(unit)
        held = sum(len(r["frame"]) + len(r["reason"]) for r in unit)
        assert held <= 16 * 2**20 + 65_536 + 1024, path  # the bound, plus the row that reached it
        stored_in_full = [r for r in unit if r["frame"] == same]
        assert len(stored_in_full) <= 16, "identical frames after the 16th keep no content"
        assert all(r["frame_bytes"] == 65_536 for r in unit)
    assert rows == 1500


def test_close_1000_reconnects_at_once_and_the_gap_is_a_reconnect(tmp_path: Path) -> None:
    # A backoff long enough that no loaded machine mistakes the reconnect for one.
    slow = BackoffPolicy(initial=5.0, cap=5.0, jitter=0.0)
    with ScriptedFeed([Send.cmds(0, 9), Close(1000)], [Send.cmds(20, 29)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(29), backoff=slow)
        seen = feed.seen
    assert summary.connections == 2
    assert seen.connected_at[1] - seen.ended_at[0] < 2.5, "no backoff after a deploy close"
    [gap] = read_gaps(tmp_path)
    assert (gap.from_seq, gap.to_seq, gap.cause) == (10, 19, "reconnect")
    assert_verified(tmp_path)


@pytest.mark.parametrize("ending", [Close(1011), Close(1013), Drop(), Close(1000)])
def test_errors_and_empty_connections_back_off_before_reconnecting(tmp_path: Path, ending) -> None:
    # The last case: a 1000 close from a connection that delivered nothing new backs off too.
    first = [ending] if ending == Close(1000) else [Send.cmds(0, 4), ending]
    with ScriptedFeed(first, [Send.cmds(5, 9)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(9))
        seen = feed.seen
    assert summary.connections == 2
    assert seen.connected_at[1] - seen.ended_at[0] >= 0.05, "backed off (FAST_BACKOFF.initial)"
    assert_verified(tmp_path)


def test_a_silently_dead_peer_is_detected_by_ping_and_left(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 4), Freeze()], [Send.cmds(5, 9)]) as feed:
        summary, _ = record(
            feed.url, tmp_path, reached(9), ping_interval=0.1, ping_timeout=0.1, close_timeout=0.1
        )
    assert summary.connections == 2 and summary.appended == 10


def test_backoff_grows_while_connections_keep_failing(tmp_path: Path) -> None:
    with ScriptedFeed([Close(1011)], [Close(1011)], [Close(1011)], [Send.cmds(0, 0)]) as feed:
        record(feed.url, tmp_path, reached(0))
        seen = feed.seen
    waits = [nxt - end for end, nxt in zip(seen.ended_at, seen.connected_at[1:], strict=False)]
    assert waits[0] >= 0.05 and waits[1] >= 0.1 and waits[2] >= 0.2


def test_close_1008_stops_for_good(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 4), Close(1008)]) as feed:
        with pytest.raises(AuthRefused, match="authentication was refused") as failure:
            record(feed.url, tmp_path, lambda r: False)
        assert len(feed.seen.connected_at) == 1, "never reconnects after 1008"
    summary = failure.value.recorder.summary()
    assert (summary.exit_code, summary.ended_by, summary.appended) == (3, "AuthRefused", 5)
    assert [r["seq"] for r in raw_rows(tmp_path)] == list(range(5)), "sealed before stopping"


@pytest.mark.parametrize("status", [401, 403])
def test_http_auth_rejection_stops_for_good(tmp_path: Path, status: int) -> None:
    with ScriptedFeed([Reject(status)]) as feed:
        with pytest.raises(AuthRefused, match=f"HTTP {status}"):
            record(feed.url, tmp_path, lambda r: False)
        assert len(feed.seen.paths) == 1


def test_other_http_statuses_are_retried(tmp_path: Path) -> None:
    with ScriptedFeed([Reject(503)], [Send.cmds(0, 2)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(2))
    assert summary.appended == 3


def test_api_key_goes_in_the_header_and_never_into_files_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = "ak_live_SECRET_abc123"
    caplog.set_level(logging.DEBUG)
    with ScriptedFeed(
        [Send.cmds(0, 9), Send(("bad",)), Drop()], [Send.cmds(12, 14)], api_key=key
    ) as feed:
        record(feed.url, tmp_path, reached(14), api_key=key)
        seen = feed.seen
    assert seen.headers[0]["x-api-key"] == key and "api_key" not in seen.paths[0]
    ours = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    assert ours and not any(key in r.getMessage() for r in ours)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_query_auth_sends_the_key_in_the_url_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = "ak_live_QUERY_xyz"
    with ScriptedFeed([Send.cmds(0, 2)], api_key=key) as feed:
        record(feed.url, tmp_path, reached(2), api_key=key, auth="query")
        seen = feed.seen
    assert seen.paths[0] == f"/?api_key={key}" and "x-api-key" not in seen.headers[0]
    assert "proxies" in caplog.text and key not in caplog.text


def test_a_redirect_is_not_followed_and_the_key_never_leaves_the_configured_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = "ak_live_REDIRECTED_789"
    with ScriptedFeed(api_key=key) as elsewhere:
        target = f"{elsewhere.url}/stolen?token=t0k"
        with ScriptedFeed([Redirect(target)], [Send.cmds(0, 2)], api_key=key) as feed:
            summary, _ = record(feed.url, tmp_path, reached(2), api_key=key)
            redirects_seen = len(feed.seen.paths)
        assert elsewhere.seen.headers == [], "the redirect target was never contacted"
    assert redirects_seen == 2 and summary.appended == 3, "backed off, then reconnected"
    refusal = [r.getMessage() for r in caplog.records if "redirect" in r.getMessage()]
    assert refusal and f"{elsewhere.url}/stolen" in refusal[0] and "not followed" in refusal[0]
    assert "t0k" not in caplog.text and key not in caplog.text


def test_a_wrong_key_is_refused(tmp_path: Path) -> None:
    with ScriptedFeed(api_key="right") as feed, pytest.raises(AuthRefused, match="HTTP 401"):
        record(feed.url, tmp_path, lambda r: False, api_key="wrong")


def test_restart_resumes_after_the_last_seq_and_records_the_downtime(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 9)]) as feed:
        record(feed.url, tmp_path, reached(9))
    with ScriptedFeed([Send.cmds(5, 19)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(19))
    assert (summary.duplicates, summary.conflicts, summary.appended) == (5, 0, 10)
    with ScriptedFeed([Send.cmds(25, 29)]) as feed:
        record(feed.url, tmp_path, reached(29))
    [gap] = read_gaps(tmp_path)
    assert (gap.from_seq, gap.to_seq, gap.cause) == (20, 24, "restart")
    assert gap.before_ts_ms == BASE_TS_MS + 190
    assert [r["seq"] for r in raw_rows(tmp_path)] == [*range(20), *range(25, 30)]
    assert_verified(tmp_path)


def test_a_conflict_with_the_archive_is_caught_after_a_restart(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 9)]) as feed:
        record(feed.url, tmp_path, reached(9))
    with ScriptedFeed([Send((frame(9, raw=b"rewritten history"),)), Send.cmds(10, 10)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(10))
    assert summary.conflicts == 1
    assert [r["seq"] for r in table_rows(tmp_path / "quarantine")] == [9]


def test_one_recorder_per_archive(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 100)]) as feed, ThreadPoolExecutor(1) as other_thread:
        second: list[Future] = []

        def start_second(recorder: Recorder) -> bool:
            if recorder.last_seq is None:
                return False
            second.append(other_thread.submit(record, feed.url, tmp_path, lambda r: True))
            second[0].exception(PATIENCE_S)
            return True

        record(feed.url, tmp_path, start_second)
    with pytest.raises(ArchiveLocked, match="held by another recorder") as locked:
        second[0].result()
    assert locked.value.exit_code == 4


def test_segments_seal_at_hour_boundaries_and_row_limits(tmp_path: Path) -> None:
    hour = 3_600_000
    frames = [frame(seq, ts_ms=BASE_TS_MS + hour - 50 + seq * 10) for seq in range(10)]
    with ScriptedFeed([Send(tuple(frames)), Send.cmds(10, 40)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(40), segment_rows=10)
    segments = ArchiveLayout(tmp_path).segments()
    names = [
        (s.path.parent.parent.name, s.path.parent.name, s.first_seq, s.last_seq) for s in segments
    ]
    assert names[0] == ("date=2026-11-20", "hour=00", 0, 4)
    # Seqs 10.. go back to hour 00 (their ts_ms say so): they stay in the open segment, filed
    # under hour 01, until it seals by rows; the next segments begin in hour 00.
    assert names[1:] == [
        ("date=2026-11-20", "hour=01", 5, 14),
        ("date=2026-11-20", "hour=00", 15, 24),
        ("date=2026-11-20", "hour=00", 25, 34),
        ("date=2026-11-20", "hour=00", 35, 40),
    ]
    assert summary.ts_back == 5
    assert_verified(tmp_path)


def test_a_quiet_feed_is_sealed_by_age_while_recording(tmp_path: Path) -> None:
    layout = ArchiveLayout(tmp_path)
    with ScriptedFeed([Send.cmds(0, 4)]) as feed:
        summary, _ = record(
            feed.url, tmp_path, lambda r: bool(layout.segments()), segment_seconds=0.2
        )
    assert summary.appended == 5
    assert [(s.first_seq, s.last_seq) for s in layout.segments()] == [(0, 4)]


def test_a_ts_ms_flapping_across_an_hour_makes_no_file_per_command(tmp_path: Path) -> None:
    hour = 3_600_000
    first = BASE_TS_MS + hour  # 01:00:00
    times = [first + seq if seq % 2 == 0 else first - hour + seq for seq in range(2000)]
    flapping = Send(tuple(frame(seq, ts_ms=ts) for seq, ts in enumerate(times)))
    with ScriptedFeed([flapping]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(1999))
    segments = ArchiveLayout(tmp_path).segments()
    assert len(segments) == 1 and segments[0].path.parent.name == "hour=01"
    assert summary.ts_back == 1000 and summary.appended == 2000
    assert_verified(tmp_path)
    # A time range still finds every command, wherever its segment is filed.
    start = datetime.fromtimestamp((first - hour) / 1000, UTC)
    earlier = list(replica.open(tmp_path).replay(start=start, end=start + timedelta(hours=1)))
    assert [r.seq for r in earlier] == list(range(1, 2000, 2))
    sql = f"SELECT count(*) FROM '{tmp_path}/raw/date=*/hour=*/*.parquet' WHERE ts_ms < {first}"
    assert duckdb.sql(sql).fetchall() == [(1000,)]


def test_the_writer_backlog_is_bounded_when_every_command_seals_a_segment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hour = 3_600_000
    stepping = Send(tuple(frame(seq, ts_ms=BASE_TS_MS + seq * hour) for seq in range(300)))
    backlog = []

    def watch(recorder: Recorder) -> bool:
        backlog.append(recorder.writer_backlog)
        return len(ArchiveLayout(tmp_path).segments()) >= 299  # the last is open

    with ScriptedFeed([stepping]) as feed:
        summary, _ = record(feed.url, tmp_path, watch)
    assert summary.appended == 300 and len(ArchiveLayout(tmp_path).segments()) == 300
    assert max(backlog) <= MAX_BACKLOG_UNITS
    assert "pausing reads of the feed until it catches up" in caplog.text
