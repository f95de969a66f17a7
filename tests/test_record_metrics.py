"""``replica record --metrics-port``: /metrics scraped over HTTP while a real recording runs
(the CLI as a subprocess, loopback feeds), its counters moving and, at the end, the same as the
run's JSON summary."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from replica.recorder.metrics import LAG_BUCKETS_S, FeedLag
from replica.recorder.seq import TrackerState
from replica.recorder.session import FeedSession
from replica.recorder.units import RecentPayloads
from websockets.sync.client import connect as ws_connect

from tests.conftest import PATIENCE_S
from tests.feedserver import Close, ScriptedFeed, Send, Signal, WaitFor, frame
from tests.served import free_port, scrape
from tests.test_cli import start_recording, summary_of

QUIET = ("--status-seconds", "60", "--segment-rows", "40")


def scrape_until(port: int, condition: Callable[[dict[str, float]], bool], what: str) -> dict:
    """Scrapes until ``condition`` holds of a page (the server may not be up yet)."""
    deadline, page = time.monotonic() + PATIENCE_S, {}
    while True:
        try:
            page = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            page = {}
        if page and condition(page):
            return page
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {page}"
        time.sleep(0.05)


def quarantined(page: dict[str, float]) -> float:
    return sum(v for k, v in page.items() if k.startswith("replica_record_quarantined_total{"))


def test_metrics_move_during_a_recording_and_end_as_its_summary(tmp_path: Path) -> None:
    port, first_part_sent, go_on = free_port(), threading.Event(), threading.Event()
    dup = frame(50)  # the same command again: a harmless duplicate
    conflict = frame(60, raw=b"another payload")  # seq 60 again, different: a conflict
    first = [
        Send.cmds(1, 100),
        Send((dup, conflict, "not json", b"\x01binary")),
        Signal(first_part_sent),
        WaitFor(go_on),
        Close(1001),  # a deploy: the recorder reconnects at once
    ]
    second = [Send.cmds(101, 150), Send.cmds(156, 200)]  # seqs 151-155 never come: a gap
    with ScriptedFeed(first, second) as feed:
        endpoint = f'{{endpoint="{feed.url}"}}'
        proc = start_recording(feed.url, tmp_path / "archive", "--metrics-port", port, *QUIET)
        try:
            before = scrape_until(
                port,
                lambda p: (
                    p["replica_record_commands_archived_total"] == 100
                    and quarantined(p) == 3
                    and p["replica_record_feed_lag_seconds_count"] == 100
                    and p["replica_record_segments_sealed_total"] >= 2  # 40 rows a segment
                ),
                "the first connection's commands",
            )
            assert first_part_sent.is_set()
            assert before["replica_record_duplicates_total"] == 2
            assert before["replica_record_conflicts_total"] == 1
            kinds = {"conflict": 1, "not_json": 1, "binary": 1}
            for kind, count in kinds.items():
                assert before[f'replica_record_quarantined_total{{kind="{kind}"}}'] == count
            assert before["replica_record_gaps_total"] == 0
            assert before["replica_record_last_seq"] == 100
            assert before[f"replica_record_endpoint_up{endpoint}"] == 1
            assert before[f"replica_record_endpoint_connections_total{endpoint}"] == 1
            assert before[f"replica_record_endpoint_reconnects_total{endpoint}"] == 0
            assert before[f"replica_record_endpoint_commands_received_total{endpoint}"] == 102
            assert before["replica_record_relay_clients"] == 0
            go_on.set()
            after = scrape_until(
                port,
                lambda p: (
                    p["replica_record_commands_archived_total"] == 195
                    and p["replica_record_gaps_total"] == 1
                    and p["replica_record_feed_lag_seconds_count"] == 195
                    and p["replica_record_segments_sealed_total"] >= 4
                ),
                "the second connection's commands and the gap",
            )
            assert after["replica_record_missing_seqs_total"] == 5
            assert after["replica_record_last_seq"] == 200
            assert after[f"replica_record_endpoint_reconnects_total{endpoint}"] == 1
            assert after[f"replica_record_endpoint_up{endpoint}"] == 1
            assert after["replica_record_writer_backlog_segments"] >= 0
            assert after["replica_record_spool_backlog_writes"] >= 0
        finally:
            go_on.set()
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, stderr
    summary = summary_of(stdout)
    assert after["replica_record_commands_archived_total"] == summary["appended"]
    assert after["replica_record_frames_received_total"] == summary["frames"]
    assert after["replica_record_duplicates_total"] == summary["duplicates"]
    assert after["replica_record_conflicts_total"] == summary["conflicts"]
    assert after["replica_record_gaps_total"] == summary["gaps"]
    assert after["replica_record_missing_seqs_total"] == summary["missing"]
    assert quarantined(after) == summary["quarantined"]
    [totals] = summary["endpoints"]
    assert after[f"replica_record_endpoint_connections_total{endpoint}"] == totals["connections"]
    assert after[f"replica_record_endpoint_commands_won_total{endpoint}"] == totals["won"]


def test_each_endpoint_has_its_own_series(tmp_path: Path) -> None:
    port = free_port()
    with ScriptedFeed([Send.cmds(1, 60)]) as one, ScriptedFeed([Send.cmds(1, 60)]) as two:
        labels = [f'{{endpoint="{feed.url}"}}' for feed in (one, two)]
        args = (one.url, two.url, tmp_path / "archive", "--metrics-port", port, *QUIET)
        proc = start_recording(*args)
        try:
            page = scrape_until(
                port,
                lambda p: all(
                    p.get(f"replica_record_endpoint_commands_received_total{label}") == 60
                    for label in labels
                ),
                "both endpoints' commands",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, stderr
    assert page["replica_record_commands_archived_total"] == 60
    assert page["replica_record_duplicates_total"] == 60
    won = [page[f"replica_record_endpoint_commands_won_total{label}"] for label in labels]
    assert sum(won) == 60
    for label in labels:
        assert page[f"replica_record_endpoint_up{label}"] == 1
    summary = summary_of(stdout)
    assert [e["won"] for e in summary["endpoints"]] == won


def test_a_metrics_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_recording("ws://127.0.0.1:9/", tmp_path / "archive", "--metrics-port", port)
        stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    assert (proc.returncode, stdout) == (2, "")
    assert stderr.strip().splitlines()[-1].startswith("replica: error: cannot serve metrics on ")
    assert "Traceback" not in stderr
    assert not (tmp_path / "archive").exists() or not any((tmp_path / "archive").iterdir())


def test_feed_lag_counts_each_archived_command_once_across_seals() -> None:
    """Rows of units sealed between two observations count, and none twice."""
    publish_us = (1_795_132_800_000 + 10) * 1000 + 320  # frame(1)'s publish_ts_us
    session = FeedSession(TrackerState(), now_us=0, recent=RecentPayloads(), segment_rows=3)
    lag = FeedLag()
    lags_ms = [0.5, 2, 2, 40, 700, 3000, 90_000]
    for seq, ms in enumerate(lags_ms[:5], 1):  # seals a unit of 3; 2 rows open
        session.receive(frame(seq), publish_us + (seq - 1) * 10_000 + int(ms * 1000))
    lag.observe(session)
    lag.observe(session)  # nothing new
    session.take_sealed()  # the writer takes the sealed unit
    for seq, ms in enumerate(lags_ms[5:], 6):  # seals the open unit, whose 2 rows were counted
        session.receive(frame(seq), publish_us + (seq - 1) * 10_000 + int(ms * 1000))
    session.receive(frame(8), publish_us + 7 * 10_000 - 5_000)  # a clock ahead: lag 0
    assert len(session.sealed) == 1
    lag.observe(session)
    cumulative, sum_s = lag.counts.snapshot()
    bounds = [*LAG_BUCKETS_S, float("inf")]
    expected = [sum(1 for ms in [*lags_ms, 0] if ms / 1000 <= bound) for bound in bounds]
    assert cumulative == expected
    assert sum_s == sum(lags_ms) / 1000


def test_without_prometheus_client_the_option_names_the_extra(tmp_path: Path) -> None:
    """An environment without the extra: a stand-in module that cannot be imported."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "prometheus_client.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    proc = start_recording("ws://127.0.0.1:9/", tmp_path / "archive", "--metrics-port", 9, env=env)
    stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    assert (proc.returncode, stdout) == (2, "")
    assert stderr.strip() == (
        "replica: error: --metrics-port needs prometheus-client: pip install 'replica[metrics]'"
    )
    assert not (tmp_path / "archive").exists()


def test_relay_clients_are_counted_while_connected(tmp_path: Path) -> None:
    """With --serve, the relay gauges report its connected clients."""
    metrics_port, serve_port, done = free_port(), free_port(), threading.Event()
    with ScriptedFeed([Send.cmds(1, 20), WaitFor(done)]) as feed:
        args = ("--metrics-port", metrics_port, "--serve", serve_port, *QUIET)
        proc = start_recording(feed.url, tmp_path / "archive", *args)
        try:
            scrape_until(metrics_port, lambda p: p["replica_record_last_seq"] == 20, "the feed")
            with ws_connect(f"ws://127.0.0.1:{serve_port}/?from_seq=1") as client:
                client.recv(timeout=PATIENCE_S)  # connected: it is subscribed
                page = scrape_until(
                    metrics_port, lambda p: p["replica_record_relay_clients"] == 1, "the client"
                )
                assert page["replica_record_relay_backlog_frames"] >= 0
            scrape_until(metrics_port, lambda p: p["replica_record_relay_clients"] == 0, "a leave")
        finally:
            done.set()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0


def test_relay_latency_counts_each_live_command_once_per_client(tmp_path: Path) -> None:
    """With --serve, ``replica_record_relay_latency_seconds`` counts each command sent live to
    each client (receipt to send), and not those a client with from_seq read from the archive:
    20 archived before the clients connect, 10 live to both, 20 counts."""
    metrics_port, serve_port = free_port(), free_port()
    live, done = threading.Event(), threading.Event()
    with ScriptedFeed([Send.cmds(1, 20), WaitFor(live), Send.cmds(21, 30), WaitFor(done)]) as feed:
        args = ("--metrics-port", metrics_port, "--serve", serve_port, *QUIET)
        proc = start_recording(feed.url, tmp_path / "archive", *args)
        name = "replica_record_relay_latency_seconds"
        try:
            scrape_until(metrics_port, lambda p: p["replica_record_last_seq"] == 20, "the feed")
            url = f"ws://127.0.0.1:{serve_port}"
            with ws_connect(f"{url}/?from_seq=1") as past, ws_connect(url) as now:
                for client in (past, now):
                    client.recv(timeout=PATIENCE_S)  # connected: it is subscribed
                assert [seq_of(past.recv(timeout=PATIENCE_S)) for _ in range(20)] == [*range(1, 21)]
                live.set()
                for client in (past, now):
                    assert [seq_of(client.recv(timeout=PATIENCE_S)) for _ in range(10)] == [
                        *range(21, 31)
                    ]
                page = scrape_until(metrics_port, lambda p: p[f"{name}_count"] == 20, "sends")
            buckets = [value for key, value in page.items() if key.startswith(f"{name}_bucket")]
            assert buckets == sorted(buckets)
            assert page[f'{name}_bucket{{le="+Inf"}}'] == 20
            assert page[f"{name}_sum"] >= 0
        finally:
            done.set()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0


def seq_of(text: str | bytes) -> int:
    seq: int = json.loads(text)["seq"]
    return seq
