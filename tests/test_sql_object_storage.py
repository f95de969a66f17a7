"""``replica sql`` and ``replica.connect`` on ``s3://bucket/prefix``, against a real store
(SeaweedFS on loopback): the same views and answers as on the local archive, partitions pruned,
no secret in any message."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

import replica as api
from tests.conftest import replica
from tests.objectstore import SECRET_KEY, ObjectStore

QUERIES = [
    "SELECT count(*), min(seq), max(seq) FROM raw_cmds",
    "SELECT * FROM completeness",
    "SELECT date, count(*) FROM orders GROUP BY date ORDER BY date",
    "SELECT from_seq, to_seq, cause FROM gaps",
    "SELECT count(*) FROM raw_cmds WHERE date = '2026-11-20' AND hour = 23",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("s3sql") / "archive"
    result = replica("demo", archive, timeout=300)
    assert result.returncode == 0, result.stderr
    return archive


def _uploaded(demo: Path, store: ObjectStore) -> str:
    url = store.fresh_url("sql")
    result = replica("sync", demo, url, env=store.env())
    assert result.returncode == 0, result.stderr
    return url


@pytest.mark.parametrize("query", QUERIES)
def test_sql_on_a_bucket_answers_as_on_the_local_archive(
    demo: Path, object_store: ObjectStore, query: str
) -> None:
    url = _uploaded(demo, object_store)
    local = replica("sql", demo, query, "--format", "csv")
    remote = replica("sql", url, query, "--format", "csv", env=object_store.env())
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    assert local.stdout.count("\n") > 1


def test_connect_on_a_bucket_prunes_partitions(
    demo: Path, object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One day's query reads only that day's files: the later day's raw file is made
    unreadable in the bucket (defining the view reads the first file's footer), and a query on
    the first day does not notice it."""
    url = _uploaded(demo, object_store)
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    with api.connect(url) as db:
        expected = db.sql("SELECT count(*) FROM raw_cmds WHERE date = '2026-11-20'").fetchall()
    store = pafs.S3FileSystem(endpoint_override=object_store.endpoint, region="us-east-1")
    root = url.removeprefix("s3://")
    (other,) = [
        info.path
        for info in store.get_file_info(pafs.FileSelector(f"{root}/raw", recursive=True))
        if "date=2026-11-21" in info.path and info.path.endswith(".parquet")
    ]
    with store.open_output_stream(other) as stream:
        stream.write(b"not parquet at all")
    with api.connect(url) as db:
        assert db.sql("SELECT count(*) FROM raw_cmds WHERE date = '2026-11-20'").fetchall() == (
            expected
        )
        assert expected[0][0] > 0
        with pytest.raises(Exception, match="date=2026-11-21"):
            db.sql("SELECT count(*) FROM raw_cmds").fetchall()


def test_sql_with_a_wrong_secret_is_one_line_naming_no_secret(
    demo: Path, object_store: ObjectStore
) -> None:
    url = _uploaded(demo, object_store)
    wrong = "wrong-SECRET-sql-51d0"
    result = replica("sql", url, "SELECT 1", env=object_store.env(wrong), timeout=300)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.startswith(f"replica: error: {url}") and result.stderr.count("\n") == 1
    assert wrong not in result.stderr and SECRET_KEY not in result.stderr


def test_a_prefix_without_an_archive_is_not_an_archive(object_store: ObjectStore) -> None:
    url = f"s3://{object_store.bucket}/nothing-here"
    result = replica("sql", url, "SELECT 1", env=object_store.env())
    assert result.returncode == 2
    assert result.stderr == f"replica: error: {url} is not an archive: " + (
        "it has none of raw/, spool/, gaps/, quarantine/, seq-space (replica sync copies one "
        "there)\n"
    )


def test_a_query_on_a_bucket_writes_nothing_to_a_store(
    demo: Path, object_store: ObjectStore
) -> None:
    url = _uploaded(demo, object_store)
    query = f"COPY (SELECT 1) TO '{url}/raw/x.parquet'"
    result = replica("sql", url, query, env=object_store.env())
    assert result.returncode == 2
    assert "to an object store" in result.stderr
