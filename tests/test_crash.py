"""``kill -9`` at random moments, then restarts: the archive's crash-safety promise.

A live-paced feed keeps streaming while the recorder is dead. After every kill we note which
seqs had reached the spool; at the end the archive must hold all of them, have no half files
and no duplicate seqs, pass ``verify``, and carry gap records (cause ``restart``) that cover
exactly what was missed while down.
"""

from __future__ import annotations

import errno
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from replica.recorder.frames import Command
from replica.recorder.spool import decode_records, leftover_spools, read_spool
from replica.schemas.archive import ArchiveLayout

from replica.maintenance.verify import read_gaps, verify
from tests.conftest import PATIENCE_S, raw_rows, replica
from tests.feedserver import Live, ScriptedFeed, Send, frame
from tests.test_cli import start_recording, summary_of, wait_for

HEAD_SIZE = 9  # a spool chunk's kind (1), length (4) and crc32 (4)
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


def spool_chunks(path: Path) -> list[tuple[int, int]]:
    """(start, end) of each whole chunk of a spool file, read from the chunk heads alone."""
    data = path.read_bytes()
    found, pos = [], 0
    while pos + HEAD_SIZE <= len(data):
        end = pos + HEAD_SIZE + int.from_bytes(data[pos + 1 : pos + 5], "little")
        if end > len(data):
            break
        found.append((pos, end))
        pos = end
    return found


def chunk_seqs(path: Path, chunk: tuple[int, int]) -> set[int]:
    body = path.read_bytes()[chunk[0] + HEAD_SIZE : chunk[1]]
    return {item.seq for _, item in decode_records(body) if type(item) is Command}


@pytest.mark.parametrize("damage", ["header", "middle"])
def test_a_flipped_byte_in_a_spool_costs_only_its_chunk_and_the_spool_is_kept(
    tmp_path: Path, damage: str
) -> None:
    archive = tmp_path / "archive"
    layout = ArchiveLayout(archive)
    args = ("--segment-seconds", "600", "--status-seconds", "60")
    with ScriptedFeed([Live(rate=2000)], [Live(rate=2000)]) as feed:
        proc = start_recording(feed.url, archive, *args)
        wait_for(
            lambda: any(len(spool_chunks(p)) >= 8 for p in leftover_spools(layout.spool_dir)),
            "several chunks on the spool",
        )
        proc.kill()
        proc.communicate(timeout=PATIENCE_S)
        [spool] = leftover_spools(layout.spool_dir)
        chunks = spool_chunks(spool)[:8]
        spooled = set().union(*(chunk_seqs(spool, c) for c in chunks[1:]))
        victim = chunks[0] if damage == "header" else chunks[4]
        lost = set() if damage == "header" else chunk_seqs(spool, victim)
        data = bytearray(spool.read_bytes())
        data[(victim[0] + HEAD_SIZE + victim[1]) // 2] ^= 0x10
        spool.write_bytes(bytes(data))

        proc = start_recording(feed.url, archive, *args)
        connections = len(feed.seen.connected_at)
        wait_for(lambda: len(feed.seen.connected_at) > connections, "the restart's connection")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, stderr
    archived = {row["seq"] for row in raw_rows(archive)}
    assert spooled - lost <= archived, "every intact chunk after the damage is recovered"
    assert lost and not lost & archived if damage == "middle" else not lost
    [kept] = (layout.spool_dir / "damaged").iterdir()
    assert kept.name == spool.name and not spool.exists()
    [said] = [line for line in stderr.splitlines() if f"{spool} is damaged" in line]
    assert "recovered" in said and "moved it to" in said and "crash" not in said
    if damage == "middle":
        gaps = read_gaps(archive)
        assert any(g.from_seq <= min(lost) and max(lost) <= g.to_seq for g in gaps)
    else:
        assert "header, rebuilt from the file name" in said


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs: a disk that really fills up (mounting it needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> None:
    """Take whatever space the recorder left: the disk stays full for the restart."""
    try:
        with open(disk / "filler", "wb") as sink:
            while True:
                sink.write(b"\0" * 4096)
                sink.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def test_restarting_on_a_full_disk_is_one_line_and_exit_1_and_keeps_the_spool(
    small_disk: Path,
) -> None:
    archive = small_disk / "archive"
    layout = ArchiveLayout(archive)
    rng = random.Random(14)
    frames = tuple(frame(seq, raw=rng.randbytes(2048)) for seq in range(3000))
    with ScriptedFeed([Send(frames)]) as feed:
        first = start_recording(feed.url, archive, "--status-seconds", "60")
        _, stderr = first.communicate(timeout=PATIENCE_S)
        assert first.returncode == 1 and "No space left on device" in stderr
        spools = leftover_spools(layout.spool_dir)
        assert spools
        fill(small_disk)

        again = replica("record", feed.url, archive, timeout=PATIENCE_S)
        assert again.returncode == 1 and "Traceback" not in again.stderr, again.stderr
        errors = [line for line in again.stderr.splitlines() if line.startswith("replica: error")]
        assert len(errors) == 1 and "No space left on device" in errors[0], again.stderr
        assert "it is kept" in errors[0]
        assert summary_of(again.stdout)["exit_code"] == 1
        assert leftover_spools(layout.spool_dir) == spools

        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        last = start_recording(feed.url, archive, "--status-seconds", "60")
        wait_for(lambda: not set(spools) & set(leftover_spools(layout.spool_dir)), "recovery")
        last.send_signal(signal.SIGTERM)
        stdout, stderr = last.communicate(timeout=PATIENCE_S)
    assert last.returncode == 0, stderr
    assert summary_of(stdout)["recovered_frames"] > 0 and raw_rows(archive)


def test_taking_the_lock_on_a_full_disk_is_one_line_and_exit_1(small_disk: Path) -> None:
    archive = small_disk / "archive"
    ArchiveLayout(archive).spool_dir.mkdir(parents=True)
    (archive / ".lock").touch()  # left empty: writing the holder's pid needs space
    fill(small_disk)
    result = replica("record", "ws://127.0.0.1:9", archive, timeout=PATIENCE_S)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"replica: error: cannot use the archive {archive}")
    assert "No space left on device" in result.stderr
