"""``replica compact`` on a real store (SeaweedFS on loopback), which has no rename: merged
segments are uploaded before their inputs are deleted, and a reader replaying in a loop while it
runs, or after a run was killed halfway, sees every seq exactly once."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from replica.replay.reader import read_selected
from replica.replay.records import ReplayGap
from replica.replay.selection import Selection
from replica.schemas.archive import ArchiveLayout

import replica as api
from replica.maintenance.compact import compact
from tests.compactarchive import AFTER, START_MS, STORE_SEGMENT_ROWS, decoded_archive
from tests.conftest import replica, replica_while_reading
from tests.objectstore import ObjectStore
from tests.rawarchive import feed_rows, write_archive


def _synced(archive: Path, store: ObjectStore) -> str:
    url = store.fresh_url("compact")
    result = replica("sync", archive, url, env=store.env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return url


def _replayed(archive: str) -> tuple[int, str]:
    """How many commands a replay gives, and a digest of their seqs and payloads; fails if a
    seq comes twice or out of order."""
    digest, count, last = hashlib.sha256(), 0, -1
    for item in api.open(archive).replay():
        if type(item) is ReplayGap:
            continue
        assert item.seq > last, f"seq {item.seq} after {last}"
        digest.update(item.seq.to_bytes(8, "big") + item.raw)
        count, last = count + 1, item.seq
    return count, digest.hexdigest()


def test_a_replay_in_a_loop_sees_each_seq_once_while_compact_runs_on_the_store(
    tmp_path: Path, object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    archive = decoded_archive(tmp_path / "archive", STORE_SEGMENT_ROWS)
    url = _synced(archive, object_store)
    expected = _replayed(str(archive))
    before = len(ArchiveLayout.open(url).segments())
    result, seen = replica_while_reading(lambda: _replayed(url), "compact", url, env=store_env)
    assert result.returncode == 0, result.stderr
    assert "segments merged into" in result.stdout
    assert len(seen) >= 2 and set(seen) == {expected}
    layout = ArchiveLayout.open(url)
    assert layout.listing()[1] == [] and len(layout.segments()) < before
    report = api.verify(url)
    assert report.ok, report.problems
    again = replica("compact", url, env=store_env, timeout=600)
    assert again.returncode == 0 and again.stdout.strip() == "nothing to compact", again.stdout


def test_a_killed_compaction_leaves_each_seq_once_and_a_rerun_deletes_its_inputs(
    tmp_path: Path, object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    """What a run killed between its upload and its deletions leaves (the merged segments of
    a local compaction uploaded beside their inputs, some of which are deleted already)."""
    archive = decoded_archive(tmp_path / "archive", STORE_SEGMENT_ROWS)
    expected = _replayed(str(archive))
    url = _synced(archive, object_store)
    compacted = tmp_path / "compacted"
    shutil.copytree(archive, compacted)
    compact(compacted, now=AFTER)
    result = replica("sync", compacted, url, env=store_env, timeout=300)
    assert result.returncode == 0, result.stderr
    layout = ArchiveLayout.open(url)
    superseded = layout.listing()[1]
    assert superseded
    for segment in superseded[::3]:  # a run deletes an input's decoded files, then the input
        fs = segment.path.location.filesystem
        for path in (layout.root / "decoded").glob(f"*/date=*/{segment.path.name}"):
            fs.delete_file(path.key)
        fs.delete_file(segment.path.key)
    assert _replayed(url) == expected
    report = api.verify(url)
    assert report.ok, report.problems
    assert any("inside a larger one" in note for note in report.notes)
    rerun = replica("compact", url, env=store_env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished the interrupted compaction" in rerun.stdout
    assert ArchiveLayout.open(url).listing()[1] == []
    assert _replayed(url) == expected
    assert not set(_decoded_names(url)) & {segment.path.name for segment in superseded}


def _decoded_names(url: str) -> list[str]:
    layout = ArchiveLayout.open(url)
    return [path.name for path in (layout.root / "decoded").glob("*/date=*/*.parquet")]


def test_a_segment_deleted_while_a_replay_reads_it_is_read_on_from_the_merged_one(
    tmp_path: Path, object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    """A store cannot keep a deleted object readable, as a disk keeps an open file: a reader
    between two row groups of an input when the compaction deletes it goes on from the merged
    segment, after the last seq it gave."""
    rows = feed_rows()[:400]
    for i, row in enumerate(rows):
        row["ts_ms"] = START_MS + 1_000 * i
    archive = tmp_path / "archive"
    write_archive(archive, rows, per_segment=100, row_group_rows=20)
    url = _synced(archive, object_store)
    compacted = tmp_path / "compacted"
    shutil.copytree(archive, compacted)
    compact(compacted, now=AFTER)
    inputs = ArchiveLayout.open(url).segments()
    reading = read_selected(ArchiveLayout.open(url), Selection(), batch_rows=20)
    first = next(reading)
    result = replica("sync", compacted, url, env=store_env, timeout=300)
    assert result.returncode == 0, result.stderr
    for segment in inputs:
        segment.path.unlink()
    seqs = [seq for batch in [first, *reading] for seq in batch.column(0).to_pylist()]
    assert seqs == [row["seq"] for row in rows]
