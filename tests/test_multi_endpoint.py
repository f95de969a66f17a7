"""Recording two endpoints of one feed at once, over real loopback servers.

Two scripted servers with complementary outages (one drops 30..44 across a close 1011, the
other 70..79 across a close 1000 mid-stream): the archive has every seq either served, once, in
order, and no gap; every delivery is an arrival row; each connection is a row. Then the same
through the CLI, killed with ``kill -9`` at random moments and restarted with the same URLs:
nothing that reached the spool is lost, no seq is archived twice.
"""

from __future__ import annotations

import logging
import random
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from replica.recorder.frames import parse_frame
from replica.recorder.recorder import Recorder
from replica.recorder.spool import SpoolWriter, leftover_spools, read_spool, spooled_commands
from replica.recorder.units import Carried, Via
from replica.schemas.archive import ArchiveLayout, day_of

from replica.maintenance.compact_raw import spooled_days
from replica.maintenance.verify import read_gaps, verify
from tests.conftest import PATIENCE_S, raw_rows, reached, record, replica, table_rows
from tests.feedserver import BASE_TS_MS, Close, Live, ScriptedFeed, Send, Signal, WaitFor, frame
from tests.test_cli import start_recording, summary_of, wait_for


def all_delivered(recorder: Recorder) -> bool:
    """Each server's every frame: 85 from US, 90 from JP."""
    return sum(e["delivered"] for e in recorder.summary().endpoints) == 85 + 90


def test_complementary_outages_on_two_endpoints_leave_no_gap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "replica.recorder")
    us_done = threading.Event()
    us = ScriptedFeed(
        [Send.cmds(0, 29), Close(1011)],
        [Send.cmds(45, 99), Signal(us_done)],
    )
    # JP jumps 69 -> 80 only after US has sent everything: US is connected all along then.
    jp = ScriptedFeed(
        [Send.cmds(0, 69), WaitFor(us_done), Close(1000)],
        [Send.cmds(80, 99)],
    )
    with us, jp:
        summary, _ = record(
            (us.url, jp.url), tmp_path, all_delivered, gap_wait=PATIENCE_S, status_seconds=0.01
        )
    assert [row["seq"] for row in raw_rows(tmp_path)] == list(range(100))
    assert summary.gaps == 0 and table_rows(tmp_path / "gaps") == []
    by_url = {e["endpoint"]: e for e in summary.endpoints}
    assert by_url[us.url]["delivered"] == 30 + 55 and by_url[jp.url]["delivered"] == 70 + 20
    assert by_url[us.url]["won"] + by_url[jp.url]["won"] == 100
    assert by_url[us.url]["connections"] == by_url[jp.url]["connections"] == 2

    arrivals = table_rows(tmp_path / "arrivals")
    assert Counter(row["endpoint"] for row in arrivals) == {us.url: 85, jp.url: 90}
    assert {row["seq"] for row in arrivals} == set(range(100))
    connections = table_rows(tmp_path / "connections")
    ended = sorted((row["endpoint"], row["why"]) for row in connections)
    assert (us.url, "closed with code 1011") in ended
    assert (jp.url, "closed with code 1000") in ended
    assert sum(row["won"] for row in connections) == 100

    # The status line says, per endpoint, whether it is up and how much it won of what it sent.
    assert re.search(rf"{us.url} (up|down) won \d+/\d+, {jp.url} (up|down) won", caplog.text)

    # The arrivals and connections views answer in SQL: US against JP, per command.
    query = (
        "SELECT count(*) FROM arrivals a JOIN arrivals b USING (seq) "
        f"WHERE a.endpoint = '{us.url}' AND b.endpoint = '{jp.url}'"
    )
    result = replica("sql", tmp_path, query, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(100 - 15 - 10)
    result = replica("sql", tmp_path, "SELECT sum(won) FROM connections", "--format", "csv")
    assert result.stdout.strip().splitlines()[-1] == "100"


def test_one_url_writes_no_arrivals_and_no_connections(tmp_path: Path) -> None:
    with ScriptedFeed([Send.cmds(0, 9)]) as feed:
        summary, _ = record(feed.url, tmp_path, reached(9))
    assert summary.appended == 10 and summary.endpoints[0]["won"] == 10
    assert not (tmp_path / "arrivals").exists() and not (tmp_path / "connections").exists()


def test_the_same_url_twice_is_refused_in_one_line(tmp_path: Path) -> None:
    url = "ws://127.0.0.1:9/feed"
    result = replica("record", url, url, tmp_path / "a")
    assert result.returncode == 2
    assert result.stderr.strip() == f"replica: error: the URL {url} is given twice"


def spooled_seqs(layout: ArchiveLayout) -> set[int]:
    return {
        command.seq
        for path in leftover_spools(layout.spool_dir)
        for command in spooled_commands(read_spool(path).records)
    }


def spool_bytes(layout: ArchiveLayout) -> int:
    return sum(path.stat().st_size for path in leftover_spools(layout.spool_dir))


def test_kill_9_with_two_endpoints_loses_nothing_spooled_and_archives_no_seq_twice(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "archive"
    layout = ArchiveLayout(archive)
    rng = random.Random(20261130)
    spooled: set[int] = set()
    args = ("--segment-seconds", "0.25", "--segment-rows", "500", "--status-seconds", "60")
    args += ("--gap-wait", "0.5")
    with (
        ScriptedFeed(*([Live(rate=2000)] for _ in range(6))) as us,
        ScriptedFeed(*([Live(rate=2000)] for _ in range(6))) as jp,
    ):

        def both_connected() -> None:
            before = len(us.seen.connected_at), len(jp.seen.connected_at)
            wait_for(
                lambda: (
                    (len(us.seen.connected_at), len(jp.seen.connected_at)) > before
                    and len(us.seen.connected_at) > before[0]
                    and len(jp.seen.connected_at) > before[1]
                ),
                "a connection to each endpoint",
            )
            wait_for(lambda: spool_bytes(layout) > 4096, "frames on the spool")

        for _ in range(3):
            proc = start_recording(us.url, jp.url, archive, *args)
            both_connected()
            time.sleep(rng.uniform(0.0, 0.6))
            proc.kill()
            proc.communicate(timeout=PATIENCE_S)
            spooled |= spooled_seqs(layout)
        proc = start_recording(us.url, jp.url, archive, *args)
        both_connected()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, stderr
    summary = summary_of(stdout)
    assert summary["ended_by"] == "SIGTERM" and len(summary["endpoints"]) == 2
    report = verify(archive)
    assert report.ok, report.problems
    archived = [row["seq"] for row in raw_rows(archive)]
    assert archived == sorted(set(archived)), "no seq archived twice, in seq order"
    assert spooled and spooled <= set(archived), "everything that reached the spool is archived"
    gaps = read_gaps(archive)
    covered = set(archived) | {s for g in gaps for s in range(g.from_seq, g.to_seq + 1)}
    assert covered == set(range(archived[0], archived[-1] + 1))
    assert not layout.temporary_files() and not leftover_spools(layout.spool_dir)


def test_compaction_sees_a_day_that_only_another_endpoints_spooled_commands_hold(
    tmp_path: Path,
) -> None:
    layout = ArchiveLayout(tmp_path)
    writer = SpoolWriter(layout.spool_dir)
    writer.open("01764000000000000-00000000", {"unit": "01764000000000000-00000000"})
    second = parse_frame(frame(7))
    first = parse_frame(frame(8, ts_ms=BASE_TS_MS + 86_400_000))
    writer.append("01764000000000000-00000000", [(1, Via(1, second)), (2, Carried(first))])
    writer.close_all()
    assert set(spooled_days(layout)) == {day_of(BASE_TS_MS), day_of(BASE_TS_MS + 86_400_000)}
