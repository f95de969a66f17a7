"""``replica verify s3://... --cluster``: two Dask worker processes on loopback check the segments
of an archive on a real store (SeaweedFS), opening each object themselves. The workers get the
store's endpoint with each task and their credentials from their own environment (a
``LocalCluster``'s workers inherit this process's), never as a task argument; what they report is
what a verify without a cluster reports, damage included."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest
from replica.schemas.storepath import store_root

from replica.maintenance.verify import verify
from tests.conftest import replica
from tests.localcluster import GUARD_S, local_cluster
from tests.objectstore import SECRET_KEY, ObjectStore
from tests.rawarchive import feed_rows, write_archive


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
