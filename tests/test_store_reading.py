"""The read commands on ``s3://bucket/prefix``, against a real store (SeaweedFS on loopback): a
recorded archive synced there replays, serves, lists its gaps, counts and verifies exactly as the
local one; a day's read never opens another day's objects; a follower sees what is uploaded
after it began; a store error is one line with no secret."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import duckdb
import pyarrow.fs as pafs
import pytest
from websockets.asyncio.client import connect

import replica as api
from tests.conftest import PATIENCE_S, replica
from tests.objectstore import SECRET_KEY, ObjectStore
from tests.rawarchive import payload_rows, write_archive
from tests.replayarchives import rows_for, write_segments
from tests.served import Served

SELECTIONS = [
    (),
    ("--start", "2026-11-21"),
    ("--from-seq", "482911000", "--to-seq", "482911099"),
    ("--digest",),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive recorded from the bundled feed over a loopback server, and decoded."""
    archive = tmp_path_factory.mktemp("s3read") / "archive"
    result = replica("demo", archive, timeout=300)
    assert result.returncode == 0, result.stderr
    return archive


def _synced(demo: Path, store: ObjectStore) -> str:
    url = store.fresh_url("read")
    result = replica("sync", demo, url, env=store.env())
    assert result.returncode == 0, result.stderr
    return url


@pytest.fixture(scope="module")
def url(demo: Path, object_store: ObjectStore) -> str:
    return _synced(demo, object_store)


def _store(object_store: ObjectStore) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        access_key=object_store.env()["AWS_ACCESS_KEY_ID"],
        secret_key=SECRET_KEY,
        endpoint_override=object_store.endpoint,
        region="us-east-1",
    )


def _raw_objects(store: pafs.S3FileSystem, url: str, day: str) -> list[str]:
    selector = pafs.FileSelector(f"{url.removeprefix('s3://')}/raw", recursive=True)
    return [
        info.path
        for info in store.get_file_info(selector)
        if f"date={day}" in info.path and info.path.endswith(".parquet")
    ]


@pytest.mark.parametrize("selection", SELECTIONS)
def test_replay_from_a_bucket_prints_what_the_local_archive_prints(
    demo: Path, url: str, object_store: ObjectStore, selection: tuple[str, ...]
) -> None:
    local = replica("replay", demo, *selection)
    remote = replica("replay", url, *selection, env=object_store.env())
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    assert remote.stderr == local.stderr.replace(str(demo), url)
    assert local.stdout.count("\n") >= 1


def test_the_python_api_replays_a_bucket_as_the_local_archive(
    demo: Path, url: str, object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    expected = list(api.open(demo).replay())
    assert list(api.open(url).replay()) == expected

    async def replayed() -> list[object]:
        return [item async for item in api.open(url).replay(speed=1e9)]

    assert [tuple(r)[:6] for r in asyncio.run(replayed())] == [tuple(r)[:6] for r in expected]


def test_an_endpoint_given_as_an_option_is_used(
    demo: Path, url: str, object_store: ObjectStore
) -> None:
    env = {**object_store.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens
    local = replica("replay", demo, "--digest")
    remote = replica("replay", url, "--digest", "--endpoint-url", object_store.endpoint, env=env)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout


@pytest.mark.parametrize(
    "command",
    [("gaps",), ("gaps", "--json"), ("stats", "--json"), ("stats", "--date", "2026-11-21"),
     ("verify",), ("verify", "--since", "2026-11-21", "--digest")],
)  # fmt: skip
def test_gaps_stats_and_verify_on_a_bucket_print_what_they_print_locally(
    demo: Path, url: str, object_store: ObjectStore, command: tuple[str, ...]
) -> None:
    local = replica(*command[:1], demo, *command[1:])
    remote = replica(*command[:1], url, *command[1:], env=object_store.env())
    assert local.returncode == 0, local.stderr
    assert (remote.returncode, remote.stdout) == (0, local.stdout), remote.stderr
    assert local.stdout.strip()


def test_one_day_read_from_a_bucket_never_opens_the_other_days_objects(
    demo: Path, object_store: ObjectStore
) -> None:
    """The first day's raw objects are overwritten with garbage: replaying, counting and
    verifying the second day alone does not notice (their names are listed, not read)."""
    url = _synced(demo, object_store)
    local_replay = replica("replay", demo, "--start", "2026-11-21", "--digest")
    local_stats = replica("stats", demo, "--date", "2026-11-21", "--json")
    store = _store(object_store)
    spoiled = _raw_objects(store, url, "2026-11-20")
    assert spoiled
    for path in spoiled:
        with store.open_output_stream(path) as stream:
            stream.write(b"not parquet at all")
    env = object_store.env()
    replayed = replica("replay", url, "--start", "2026-11-21", "--digest", env=env)
    assert (replayed.returncode, replayed.stdout) == (0, local_replay.stdout), replayed.stderr
    stats = replica("stats", url, "--date", "2026-11-21", "--json", env=env)
    assert (stats.returncode, stats.stdout) == (0, local_stats.stdout), stats.stderr
    verified = replica("verify", url, "--date", "2026-11-21", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    whole = replica("verify", url, env=env)  # and the damage is there to be found
    assert whole.returncode == 1
    assert f"problem: s3://{spoiled[0]}: does not read" in whole.stdout


def _bytes_sent(store: ObjectStore) -> float:
    """What the store has sent from its bucket so far, by its own count (object bytes)."""
    with urllib.request.urlopen(store.metrics_url, timeout=30) as response:
        text = response.read().decode()
    pattern = rf'^SeaweedFS_s3_bucket_traffic_sent_bytes_total{{bucket="{store.bucket}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_a_narrow_replay_from_a_bucket_fetches_ranges_not_whole_objects(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    """A segment of 20 row groups: replaying ten of its seqs takes its footer and one row group
    from the store, a small part of what a replay of all of it takes."""
    archive = tmp_path / "archive"
    rows = rows_for(list(range(1, 10_001)))
    noise = random.Random(14)
    for row in rows:  # incompressible, so that the segment is megabytes, not its footer's size
        row["raw"] = noise.randbytes(400)
    write_segments(archive, rows, per_segment=10_000, row_group_rows=500)
    url = _synced(archive, object_store)
    env = object_store.env()

    def fetched(*selection: str) -> tuple[float, str]:
        before = _bytes_sent(object_store)
        result = replica("replay", url, *selection, env=env)
        assert result.returncode == 0, result.stderr
        return _bytes_sent(object_store) - before, result.stdout

    narrow, frames = fetched("--from-seq", "5001", "--to-seq", "5010")
    whole, _ = fetched()
    assert frames == replica("replay", archive, "--from-seq", "5001", "--to-seq", "5010").stdout
    assert frames.count("\n") == 10
    assert 0 < narrow < whole / 5, (narrow, whole)


def test_serve_from_a_bucket_sends_the_frames_replay_prints(
    demo: Path, url: str, object_store: ObjectStore, tmp_path: Path
) -> None:
    expected = replica("replay", demo, "--to-seq", "482910200").stdout.splitlines()

    async def received(ws_url: str) -> list[str]:
        async with connect(f"{ws_url}/?speed=max&to_seq=482910200", max_size=2**24) as ws:
            await ws.recv()  # the connected frame
            return [str(await ws.recv()) for _ in expected]

    with Served(url, tmp_path, env=object_store.env()) as served:
        frames = asyncio.run(received(served.url))
        assert served.stop() == 0
    assert frames == expected
    assert len(frames) > 100


def test_following_a_bucket_yields_each_segment_once_it_is_uploaded(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    """A follower of a bucket sees the sealed segments a recorder (here: sync) uploads after
    it started, from its from_seq on, each command once and in order."""
    local, url = tmp_path / "archive", object_store.fresh_url("follow")
    rows = payload_rows([b"p%d" % i for i in range(300)])
    write_archive(local, rows[:200], per_segment=100)
    assert replica("sync", local, url, env=object_store.env()).returncode == 0
    command = [sys.executable, "-m", "replica", "replay", url, "--follow", "--from-seq", "1150"]
    follower = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, **object_store.env()}
    )
    watchdog = threading.Timer(PATIENCE_S, follower.kill)  # a follower that prints nothing
    watchdog.start()
    try:
        assert follower.stdout is not None
        seqs = [json.loads(follower.stdout.readline())["seq"] for _ in range(50)]
        write_archive(local, rows[200:], per_segment=100)  # sealed after the follower began
        assert replica("sync", local, url, env=object_store.env()).returncode == 0
        seqs += [json.loads(follower.stdout.readline())["seq"] for _ in range(100)]
    finally:
        watchdog.cancel()
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=PATIENCE_S)
    assert seqs == list(range(1150, 1300))


def test_sql_counts_each_seq_once_while_a_merged_segment_and_its_inputs_are_both_listed(
    tmp_path: Path, object_store: ObjectStore
) -> None:
    """The instant of a compaction on a store after its upload and before its deletes: SQL
    reads the covering segment, not the inputs too."""
    url, rows = object_store.fresh_url("sql-window"), payload_rows([b"p%d" % i for i in range(200)])
    write_archive(tmp_path / "inputs", rows, per_segment=100)
    write_archive(tmp_path / "merged", rows, per_segment=200)
    for archive in ("inputs", "merged"):
        assert replica("sync", tmp_path / archive, url, env=object_store.env()).returncode == 0
    query = "select count(*), count(distinct seq) from raw_cmds"
    result = replica("sql", url, query, "--format", "csv", env=object_store.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "200,200"


@pytest.mark.parametrize(
    "command", [("replay",), ("gaps",), ("stats",), ("verify",), ("serve", "--port", "0")]
)
def test_wrong_credentials_are_one_line_without_the_secret(
    url: str, object_store: ObjectStore, command: tuple[str, ...]
) -> None:
    wrong = "wrong-SECRET-4e2b77"
    result = replica(command[0], url, *command[1:], env=object_store.env(secret=wrong))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"replica: error: {url}")
    assert "check the credentials" in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert SECRET_KEY not in result.stderr + result.stdout


def test_duckdb_on_a_bucket_writes_views_that_read_the_bucket(
    demo: Path, url: str, object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "views.duckdb"
    result = replica("duckdb", url, database, env=object_store.env())
    assert result.returncode == 0, result.stderr
    assert f"over {url}" in result.stdout
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    from replica.sql_storage import open_tree

    query = "SELECT count(*), min(seq), max(seq) FROM raw_cmds"
    with duckdb.connect(str(database)) as db:
        open_tree(url).register(db)  # what DuckDB's httpfs would do in a duckdb shell
        remote = db.sql(query).fetchall()
    with api.connect(demo) as db:
        assert remote == db.sql(query).fetchall()
