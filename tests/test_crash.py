"""``kill -9`` at random moments, then restarts: the archive's crash-safety promise.

A live-paced feed keeps streaming while the recorder is dead. After every kill we note which
seqs had reached the spool; at the end the archive must hold all of them, have no half files
and no duplicate seqs, pass ``verify``, and carry gap records (cause ``restart``) that cover
exactly what was missed while down.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from replica.recorder.frames import Command
from replica.recorder.spool import leftover_spools, read_spool
from replica.schemas.archive import ArchiveLayout

from replica.maintenance.verify import read_gaps, verify
from tests.conftest import PATIENCE_S, raw_rows
from tests.feedserver import Live, ScriptedFeed
from tests.test_cli import start_recording, summary_of, wait_for

RECORD_ARGS = ("--segment-seconds", "0.25", "--segment-rows", "500", "--status-seconds", "60")


def spooled_seqs(layout: ArchiveLayout) -> set[int]:
    """Commands are spooled decoded; other records are frame texts or connection markers."""
    return {
        item.seq
        for path in leftover_spools(layout.spool_dir)
        for _, item in read_spool(path).records
        if type(item) is Command
    }


def spool_bytes(layout: ArchiveLayout) -> int:
    return sum(path.stat().st_size for path in leftover_spools(layout.spool_dir))


def test_kill_9_at_any_moment_loses_nothing_that_reached_the_spool(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    layout = ArchiveLayout(archive)
    rng = random.Random(20261121)
    spooled: set[int] = set()
    with ScriptedFeed(*([Live(rate=3000)] for _ in range(10))) as feed:
        for round_ in range(5):
            proc = start_recording(feed.url, archive, *RECORD_ARGS)
            if round_ != 2:  # round 2 dies during start-up, possibly mid-recovery
                connections = len(feed.seen.connected_at)
                wait_for(lambda c=connections: len(feed.seen.connected_at) > c, "a connection")
                wait_for(lambda: spool_bytes(layout) > 4096, "frames on the spool")
            time.sleep(rng.uniform(0.0, 0.6))
            proc.kill()
            proc.communicate(timeout=PATIENCE_S)
            spooled |= spooled_seqs(layout)
        proc = start_recording(feed.url, archive, *RECORD_ARGS)
        connections = len(feed.seen.connected_at)
        wait_for(lambda: len(feed.seen.connected_at) > connections, "the last connection")
        wait_for(lambda: spool_bytes(layout) > 4096, "frames on the spool")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, stderr
    assert summary_of(stdout)["ended_by"] == "SIGTERM"

    report = verify(archive)
    assert report.ok, report.problems
    archived = [row["seq"] for row in raw_rows(archive)]
    assert len(archived) == len(set(archived)), "no duplicate seqs"
    assert spooled and spooled <= set(archived), "everything that reached the spool is archived"
    gaps = read_gaps(archive)
    assert {gap.cause for gap in gaps} == {"restart"}
    covered = set(archived) | {s for g in gaps for s in range(g.from_seq, g.to_seq + 1)}
    assert covered == set(range(archived[0], archived[-1] + 1))
    assert sum(g.missing for g in gaps) + len(archived) == len(covered), "gaps are disjoint"
    assert not layout.temporary_files() and not leftover_spools(layout.spool_dir)
