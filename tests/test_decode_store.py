"""``replica decode`` on a real store (SeaweedFS on loopback): decoded files go straight to their
final keys, the ``_segments`` marker last, so a run that stopped halfway only means a segment is
decoded again; and after a compaction on the store, decoding gives the same tables back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from replica.decoder.archive import decode_archive
from replica.schemas.archive import ArchiveLayout

from replica.maintenance.compact import compact
from tests.compactarchive import AFTER, STORE_SEGMENT_ROWS, build_archive, decoded_tables
from tests.conftest import replica
from tests.objectstore import ObjectStore


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A raw archive, and a copy decoded on disk: what the store's decode must give."""
    root = tmp_path_factory.mktemp("decodestore")
    raw = build_archive(root / "raw", per_segment=STORE_SEGMENT_ROWS)
    decoded = root / "decoded"
    shutil.copytree(raw, decoded)
    decode_archive(decoded)
    return raw, decoded


def _synced(archive: Path, store: ObjectStore) -> str:
    url = store.fresh_url("decode")
    result = replica("sync", archive, url, env=store.env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return url


def _tables(url: str, store: ObjectStore, into: Path) -> dict:
    result = replica("sync", url, into, env=store.env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return decoded_tables(into)


def test_decode_on_a_bucket_writes_the_tables_a_local_decode_writes_and_then_does_nothing(
    built: tuple[Path, Path], object_store: ObjectStore, tmp_path: Path
) -> None:
    raw, decoded = built
    url = _synced(raw, object_store)
    first = replica("decode", url, env=object_store.env(), timeout=600)
    assert first.returncode == 0, first.stderr
    assert "already up to date, 0 failed" in first.stdout
    assert _tables(url, object_store, tmp_path / "back") == decoded_tables(decoded)
    again = replica("decode", url, env=object_store.env(), timeout=600)
    assert again.returncode == 0 and again.stdout.startswith("decoded 0 of"), again.stdout


def test_a_decode_stopped_before_its_marker_decodes_that_segment_again(
    built: tuple[Path, Path],
    object_store: ObjectStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a kill between a segment's table uploads and its marker leaves: the tables of one
    version, the marker of none."""
    decoded = built[1]
    url = _synced(decoded, object_store)
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    markers = sorted((decoded / "decoded" / "_segments").rglob("*.parquet"))
    victim = markers[len(markers) // 2].relative_to(decoded).as_posix()
    (ArchiveLayout.open(url).root / victim).unlink()
    rerun = replica("decode", url, env=object_store.env(), timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("decoded 1 of"), rerun.stdout
    assert _tables(url, object_store, tmp_path / "back") == decoded_tables(decoded)


def test_after_a_compaction_on_the_bucket_a_decode_gives_the_same_tables(
    built: tuple[Path, Path], object_store: ObjectStore, tmp_path: Path
) -> None:
    decoded = built[1]
    url = _synced(decoded, object_store)
    compacted = replica("compact", url, env=object_store.env(), timeout=600)
    assert compacted.returncode == 0, compacted.stderr
    redo = replica("decode", url, env=object_store.env(), timeout=600)
    assert redo.returncode == 0, redo.stderr
    assert _tables(url, object_store, tmp_path / "back") == decoded_tables(decoded)


def test_decode_on_a_bucket_with_jobs_writes_what_one_process_writes_and_then_does_nothing(
    built: tuple[Path, Path], object_store: ObjectStore, tmp_path: Path
) -> None:
    """Worker processes open the store themselves: the URL and endpoint reach them, and their
    credentials come from the environment they inherit."""
    raw, decoded = built
    url = _synced(raw, object_store)
    first = replica("decode", url, "--jobs", "2", env=object_store.env(), timeout=600)
    assert first.returncode == 0, first.stderr
    assert "already up to date, 0 failed" in first.stdout
    assert _tables(url, object_store, tmp_path / "back") == decoded_tables(decoded)
    again = replica("decode", url, "--jobs", "2", env=object_store.env(), timeout=600)
    assert again.returncode == 0 and again.stdout.startswith("decoded 0 of"), again.stdout


def test_decode_on_a_bucket_waits_for_an_interrupted_compaction_to_be_finished(
    built: tuple[Path, Path], object_store: ObjectStore, tmp_path: Path
) -> None:
    """Merged segments uploaded beside their inputs (a compaction killed before its deletions):
    decoding the merged ones now would put their rows beside the inputs' decoded rows."""
    decoded = built[1]
    url = _synced(decoded, object_store)
    compacted = tmp_path / "compacted"
    shutil.copytree(decoded, compacted)
    compact(compacted, now=AFTER)
    assert replica("sync", compacted, url, env=object_store.env(), timeout=300).returncode == 0
    refused = replica("decode", url, env=object_store.env(), timeout=600)
    assert refused.returncode == 1
    assert refused.stderr.startswith("replica: error: a compaction was interrupted (s3://")
    assert refused.stderr.endswith(f"run 'replica compact {url}' to finish it, then decode\n")
    assert refused.stderr.count("\n") == 1
    finished = replica("compact", url, env=object_store.env(), timeout=600)
    assert finished.returncode == 0, finished.stderr
    redo = replica("decode", url, env=object_store.env(), timeout=600)
    assert redo.returncode == 0, redo.stderr
    assert _tables(url, object_store, tmp_path / "back") == decoded_tables(decoded)
