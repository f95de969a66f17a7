"""``verify``, ``decode`` and ``import-node`` of an archive on a real store (SeaweedFS) with
``--cluster``: two Dask worker processes on loopback open the objects themselves. The workers get
the store's endpoint with each task and their credentials from their own environment (a
``LocalCluster``'s workers inherit this process's), never as a task argument; what they report is
what a run without a cluster reports, damage included, and what they write is what a local run
writes, even when a worker is killed mid-run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest
from replica.decoder.archive import decode_archive
from replica.schemas.storepath import store_root

from replica.maintenance.node_import import import_node
from replica.maintenance.verify import verify
from tests.compactarchive import decoded_tables
from tests.conftest import replica
from tests.localcluster import GUARD_S, killing_a_worker, local_cluster
from tests.objectstore import SECRET_KEY, ObjectStore
from tests.rawarchive import feed_rows, write_archive
from tests.test_cluster import _node_files, _raw
from tests.test_import_node import BASE


@pytest.fixture(scope="module")
def cluster(object_store: ObjectStore) -> Iterator[distributed.Client]:
    """Two workers whose environment has the store's credentials but not its endpoint."""
    credentials = {k: v for k, v in object_store.env().items() if k != "AWS_ENDPOINT_URL"}
    saved = {name: os.environ.get(name) for name in (*credentials, "AWS_ENDPOINT_URL")}
    os.environ.update(credentials)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with local_cluster() as client:
            yield client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_verify_of_a_bucket_on_a_cluster_reports_what_verify_here_reports(
    tmp_path: Path, object_store: ObjectStore, cluster: distributed.Client
) -> None:
    root = tmp_path / "archive"
    write_archive(root, feed_rows(), per_segment=500)
    url = f"s3://{object_store.bucket}/cluster-verify"
    assert replica("sync", root, url, env=object_store.env()).returncode == 0
    endpoint = ("--endpoint-url", object_store.endpoint)
    address = cluster.scheduler.address

    stored = store_root(url, object_store.endpoint)
    before = verify(stored)
    assert before.segments == 7 and verify(stored, cluster=cluster) == before

    # a torn footer, uploaded over one segment: its problem names the object alike
    segment = sorted(p for p in (stored / "raw").rglob("*.parquet"))[1]
    with segment.location.filesystem.open_output_stream(segment.key) as out:
        out.write(b"PAR1 torn")
    damaged = verify(store_root(url, object_store.endpoint))
    assert len(damaged.problems) > len(before.problems)
    assert verify(store_root(url, object_store.endpoint), cluster=cluster) == damaged

    here = replica("verify", url, *endpoint, timeout=GUARD_S)
    there = replica("verify", url, *endpoint, "--cluster", address, timeout=GUARD_S)
    assert there.returncode == here.returncode == 1, there.stderr
    assert there.stdout == here.stdout
    assert str(segment) in there.stdout
    assert SECRET_KEY not in there.stdout + there.stderr


def _synced(root: Path, store: ObjectStore, name: str) -> str:
    url = store.fresh_url(name)
    done = replica("sync", root, url, env=store.env(), timeout=GUARD_S)
    assert done.returncode == 0, done.stderr
    return url


def _back(url: str, store: ObjectStore, into: Path) -> Path:
    done = replica("sync", url, into, env=store.env(), timeout=GUARD_S)
    assert done.returncode == 0, done.stderr
    return into


def _raw_and_decoded_here(tmp_path: Path, per_segment: int) -> tuple[Path, Path]:
    """A raw archive, and a copy of it decoded here by one process."""
    raw, local = tmp_path / "raw", tmp_path / "local"
    write_archive(raw, feed_rows(), per_segment=per_segment)
    shutil.copytree(raw, local)
    return raw, local


def test_decode_of_a_bucket_on_a_cluster_writes_what_a_local_decode_writes(
    tmp_path: Path, object_store: ObjectStore, cluster: distributed.Client
) -> None:
    raw, local = _raw_and_decoded_here(tmp_path, 500)
    url = _synced(raw, object_store, "cluster-decode")
    here = replica("decode", local, timeout=GUARD_S)
    endpoint = ("--endpoint-url", object_store.endpoint)
    there = replica(
        "decode", url, *endpoint, "--cluster", cluster.scheduler.address, timeout=GUARD_S
    )
    assert there.returncode == here.returncode == 0, there.stderr
    assert there.stdout == here.stdout and there.stdout.startswith("decoded 7 of 7")
    assert SECRET_KEY not in there.stdout + there.stderr
    assert decoded_tables(_back(url, object_store, tmp_path / "back")) == decoded_tables(local)
    again = decode_archive(store_root(url, object_store.endpoint), cluster=cluster)
    assert again.segments == 7 and again.decoded == 0 and not again.failed


def test_a_worker_killed_mid_decode_of_a_bucket_leaves_no_row_twice(
    tmp_path: Path, object_store: ObjectStore, cluster: distributed.Client
) -> None:
    raw, local = _raw_and_decoded_here(tmp_path, 100)
    url = _synced(raw, object_store, "cluster-kill")
    expected = decode_archive(local)
    kill_one, killed = killing_a_worker(cluster)
    stored = store_root(url, object_store.endpoint)
    summary = decode_archive(stored, cluster=cluster, on_progress=kill_one)
    assert killed and summary.to_dict() == expected.to_dict()
    assert decoded_tables(_back(url, object_store, tmp_path / "back")) == decoded_tables(local)
    cluster.wait_for_workers(2, timeout=GUARD_S)  # the nanny starts another, for the next test


def test_import_node_on_a_cluster_into_a_bucket_imports_what_a_local_import_does(
    tmp_path: Path, object_store: ObjectStore, cluster: distributed.Client
) -> None:
    files = _node_files(tmp_path / "node")
    local, url = tmp_path / "local", object_store.fresh_url("cluster-import")
    for root in (local, store_root(url, object_store.endpoint)):  # holding some blocks already
        import_node([files / str(BASE + 70)], root)
    expected = import_node([files], local)
    calls: list[tuple[int, int]] = []
    stored = store_root(url, object_store.endpoint)
    summary = import_node([files], stored, lambda *c: calls.append(c), cluster=cluster)
    assert summary == expected and summary.imported and summary.present and summary.gaps
    assert [done for done, _ in calls] == list(range(summary.files + 1))
    ours, theirs = _raw(local), _raw(_back(url, object_store, tmp_path / "back"))
    assert ours.keys() == theirs.keys()
    assert all(table.equals(theirs[name]) for name, table in ours.items())  # type: ignore[attr-defined]
    again = import_node([files], store_root(url, object_store.endpoint), cluster=cluster)
    assert again.segments == 0 and again.gaps == 0
    endpoint = ("--endpoint-url", object_store.endpoint)
    address = cluster.scheduler.address
    done = replica("import-node", files, url, *endpoint, "--cluster", address, timeout=GUARD_S)
    assert done.returncode == 1 and "0 segments written" in done.stdout, done.stderr
    assert SECRET_KEY not in done.stdout + done.stderr
