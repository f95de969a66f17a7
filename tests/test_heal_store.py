"""``replica heal`` of an archive on a real store (SeaweedFS on loopback), which has no rename: a
segment with seqs added inside is uploaded as two pieces, superseded until it is deleted, so a
reader at any instant sees each seq once, and a run killed at any point is completed by the next
with each added seq archived once and recorded as healed once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from replica.replay.records import ReplayGap
from replica.schemas.archive import ArchiveLayout
from replica.schemas.heals import healed_ranges
from replica.schemas.storepath import read_table

import replica as api
from replica.maintenance.heal import heal
from replica.maintenance.verify import read_gaps
from tests.conftest import raw_rows, replica, replica_while_reading
from tests.objectstore import ObjectStore
from tests.test_heal import ROWS, build

# Before the first segment (a new segment), inside the first and the second (each split), and
# 1250, which the source lacks too.
MISSING = {*range(1000, 1010), *range(1050, 1060), 1150, *range(1195, 1210), 1250}
PAYLOADS = {row["seq"]: row["raw"] for row in ROWS}


def _synced(local: Path, store: ObjectStore, name: str) -> str:
    url = store.fresh_url(name)
    result = replica("sync", local, url, env=store.env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return url


def _store_rows(url: str) -> list[dict]:
    rows = []
    for segment in ArchiveLayout.open(url).segments():
        rows += read_table(segment.path).to_pylist()
    return rows


def _keys(url: str) -> set[str]:
    root = ArchiveLayout.open(url).root
    return {path.key for path in root.glob("**/*") if path.is_file()}


def _pending(url: str) -> list[str]:
    """Heal records a run left unpublished (SeaweedFS keeps emptied directories: files only)."""
    root = ArchiveLayout.open(url).root
    return [path.key for path in root.glob(".heal/**/*.parquet") if path.is_file()]


def _replayed_seqs(url: str) -> list[int]:
    """The seqs a replay gives, each checked against its payload; fails on a seq twice."""
    seqs: list[int] = []
    for item in api.open(url).replay():
        if type(item) is ReplayGap:
            continue
        assert not seqs or item.seq > seqs[-1], f"seq {item.seq} after {seqs[-1]}"
        assert item.raw == PAYLOADS[item.seq]
        seqs.append(item.seq)
    return seqs


def _healed(url: str) -> list[int]:
    """Every healed seq, as often as a heal record names it."""
    return [s for lo, hi in healed_ranges(ArchiveLayout.open(url)) for s in range(lo, hi + 1)]


@pytest.fixture
def archives(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    """An archive with MISSING's holes, a source lacking 1151 and 1250, and the rows a local
    heal of the one from the other gives."""
    archive = build(tmp_path / "archive", MISSING)
    source = build(tmp_path / "source", {1151, 1250})
    healed_locally = tmp_path / "healed"
    shutil.copytree(archive, healed_locally)
    assert heal(healed_locally, [source]).added == len(MISSING) - 1
    return archive, source, raw_rows(healed_locally)


def test_a_store_archive_healed_from_a_local_or_a_stored_source_matches_the_local_heal(
    archives: tuple[Path, Path, list[dict]], object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    archive, source, expected = archives
    stored_source = _synced(source, object_store, "heal-source")
    for given in (source, stored_source):
        url = _synced(archive, object_store, "heal")
        result = replica("heal", url, "--from", given, env=store_env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert f"{len(MISSING) - 1} seqs added" in result.stdout and "2 rewritten" in result.stdout
        assert _store_rows(url) == expected
        assert sorted(_healed(url)) == sorted(MISSING - {1250})
        assert [(g.from_seq, g.to_seq) for g in read_gaps(url)] == [(1250, 1250)]
        layout = ArchiveLayout.open(url)
        assert layout.listing()[1] == []  # the split segments are gone
        assert _pending(url) == []
        report = api.verify(url)
        assert report.ok, report.problems
        keys = _keys(url)
        again = replica("heal", url, "--from", given, env=store_env, timeout=300)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("0 seqs added") and "nothing written" in again.stdout
        assert _keys(url) == keys


def test_a_replay_in_a_loop_sees_each_seq_once_while_heal_runs_on_the_store(
    archives: tuple[Path, Path, list[dict]], object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    archive, source, expected = archives
    url = _synced(archive, object_store, "heal-reading")
    before, after = set(_replayed_seqs(url)), [row["seq"] for row in expected]
    result, seen = replica_while_reading(
        lambda: _replayed_seqs(url), "heal", url, "--from", source, env=store_env
    )
    assert result.returncode == 0, result.stderr
    assert len(seen) >= 2 and seen[-1] == after
    for seqs in seen:  # each seq at most once (checked while reading), none of before lost
        assert before <= set(seqs) <= set(after)


KILL_SCRIPT = """
import os, signal, sys
from replica.maintenance import heal, heal_store

point = sys.argv[3]

def dying(owner, name, after, when=lambda *args: True):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        if not after and when(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if after and when(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(owner, name, wrapper)

if point == "split":  # the pieces uploaded, the segment they split not deleted
    dying(heal_store, "retire_segment", after=False)
elif point == "retired":  # the pieces published, the day's heal record not
    dying(heal_store, "retire_segment", after=True)
elif point == "recorded":  # the day's heal record published, its pending copy not deleted
    dying(heal_store._Store, "put", True, lambda self, table, path: "/heals/" in path.key)
heal.heal(sys.argv[1], [sys.argv[2]])
"""


@pytest.mark.parametrize("point", ["split", "retired", "recorded"])
def test_a_heal_killed_on_the_store_is_completed_by_the_next(
    archives: tuple[Path, Path, list[dict]],
    object_store: ObjectStore,
    store_env: dict[str, str],
    point: str,
) -> None:
    archive, source, expected = archives
    url = _synced(archive, object_store, f"heal-killed-{point}")
    before = set(_replayed_seqs(url))
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, url, str(source), point],
        timeout=300,
        env={**os.environ, **store_env},
    )
    assert killed.returncode == -9
    assert _pending(url)  # killed mid-day
    assert before <= set(_replayed_seqs(url))  # each seq once, nothing lost
    if point == "split":
        assert ArchiveLayout.open(url).listing()[1]  # the pieces, superseded
    rerun = replica("heal", url, "--from", source, env=store_env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished the interrupted" in rerun.stdout
    assert _store_rows(url) == expected
    assert sorted(_healed(url)) == sorted(MISSING - {1250})  # each added seq recorded once
    layout = ArchiveLayout.open(url)
    assert layout.listing()[1] == [] and _pending(url) == []
    report = api.verify(url)
    assert report.ok, report.problems
