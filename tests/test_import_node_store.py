"""``replica import-node`` into a prefix of a real store (SeaweedFS on loopback): segments are
built locally and uploaded to their final keys, planned against what the store already holds,
so importing again adds nothing and overlapping files add only their new blocks."""

from __future__ import annotations

from pathlib import Path

from replica.replay.records import ReplayGap
from replica.schemas.archive import ArchiveLayout
from replica.schemas.seqspace import FEED, write_marker

import replica as api
from tests.conftest import replica
from tests.objectstore import ObjectStore
from tests.test_import_node import node_file


def _url(store: ObjectStore) -> str:
    return store.fresh_url("import")


def _import(env: dict[str, str], *args: str | Path) -> str:
    result = replica("import-node", *args, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _blocks(archive: str | Path) -> list[tuple[int, bytes]]:
    return [
        (item.seq, item.raw) for item in api.open(archive).replay() if type(item) is not ReplayGap
    ]


def test_an_import_into_an_empty_prefix_gives_the_blocks_a_local_import_gives(
    tmp_path: Path, object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    url = _url(object_store)
    first = node_file(tmp_path / "nodes", 1000, 40)
    later = node_file(tmp_path / "nodes", 1100, 10)  # leaves a hole: 1041-1100
    out = _import(store_env, first, later, url)
    assert "50 blocks imported, 0 already present" in out
    local = tmp_path / "local"
    _import(store_env, first, later, local)
    assert _blocks(url) == _blocks(local)
    stored = {s.path.name: s.path.read_bytes() for s in ArchiveLayout.open(url).segments()}
    assert stored == {s.path.name: s.path.read_bytes() for s in ArchiveLayout(local).segments()}
    assert [b[0] for b in _blocks(url)] == [*range(1001, 1041), *range(1101, 1111)]
    gaps = ArchiveLayout.open(url).gap_rows(["from_seq", "to_seq", "cause"])
    assert gaps == [{"from_seq": 1041, "to_seq": 1100, "cause": "import"}]
    assert (ArchiveLayout.open(url).root / "seq-space").read_text() == "node\n"
    replayed = replica("replay", url, env=store_env, timeout=300)
    assert replayed.returncode == 0, replayed.stderr
    assert len(replayed.stdout.splitlines()) == 50


def test_importing_again_adds_nothing_and_an_overlap_adds_only_its_new_blocks(
    tmp_path: Path, object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    url = _url(object_store)
    first = node_file(tmp_path / "a", 2000, 30)
    _import(store_env, first, url)
    again = _import(store_env, first, url)
    assert "0 blocks imported, 30 already present" in again and "nothing written" in again
    overlapping = node_file(tmp_path / "b", 2020, 25)  # 2021-2045, ten of them present
    out = _import(store_env, overlapping, url)
    assert "15 blocks imported, 10 already present, 1 segments written" in out
    assert [b[0] for b in _blocks(url)] == list(range(2001, 2046))
    assert len(ArchiveLayout.open(url).segments()) == 2


def test_a_feed_archive_on_the_store_is_refused_in_one_line(
    tmp_path: Path, object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    feed = tmp_path / "feed"
    write_marker(feed, FEED)
    url = _url(object_store)
    synced = replica("sync", feed, url, env=object_store.env(), timeout=300)
    assert synced.returncode == 0, synced.stderr
    result = replica(
        "import-node", node_file(tmp_path, 10, 5), url, env=object_store.env(), timeout=300
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "holds seqs that are feed commands" in result.stderr
    assert ArchiveLayout.open(url).segments() == []


def test_an_import_killed_before_its_gaps_has_them_recorded_by_the_next_run(
    tmp_path: Path, object_store: ObjectStore, store_env: dict[str, str]
) -> None:
    url = _url(object_store)
    files = [node_file(tmp_path, 3000, 5), node_file(tmp_path, 3010, 5)]
    _import(store_env, *files, url)
    layout = ArchiveLayout.open(url)
    for path in layout.table_files(layout.gaps_dir):  # as if killed after the segments
        path.unlink()
    out = _import(store_env, *files, url)
    assert "0 blocks imported, 10 already present, 0 segments written, 1 gaps recorded" in out
    assert layout.gap_rows(["from_seq", "to_seq"]) == [{"from_seq": 3006, "to_seq": 3010}]


def test_wrong_credentials_are_one_line_without_the_secret(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    wrong = "wrong-SECRET-91c3"
    path = node_file(tmp_path, 10, 5)
    result = replica(
        "import-node", path, _url(object_store), env=object_store.env(secret=wrong), timeout=300
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert "check the credentials" in result.stderr
    assert wrong not in result.stderr + result.stdout
