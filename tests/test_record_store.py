"""``replica record URL s3://bucket/prefix`` against a real S3-compatible store (SeaweedFS on
loopback): every seq the feed sent is on the store exactly once, after a clean stop, after a
``kill -9`` mid-upload and a restart, and after the store itself went away mid-run and came back.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from websockets.asyncio.client import connect

from tests.conftest import PATIENCE_S, replica
from tests.feedserver import Close, Pause, ScriptedFeed, Send, WaitFor, frame
from tests.objectstore import ACCESS_KEY, SECRET_KEY, ObjectStore, running_store
from tests.test_cli import start_recording, summary_of, wait_for
from tests.test_relay import Recording

RECORD_ARGS = ("--segment-seconds", "0.25", "--status-seconds", "0.5")
STOP_WITHIN_S = 120.0  # a guard against hanging: a stop waits for the last uploads


def _prefix(store: ObjectStore, name: str) -> str:
    return store.fresh_url(name).removeprefix("s3://")


def _client(store: ObjectStore) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        endpoint_override=store.endpoint,
        region="us-east-1",
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )


def _objects(store: ObjectStore, prefix: str) -> dict[str, int]:
    """Every object under ``prefix``: its key relative to the prefix, and its size."""
    selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
    return {
        info.path[len(prefix) + 1 :]: info.size
        for info in _client(store).get_file_info(selector)
        if info.type == pafs.FileType.File
    }


def store_seqs(store: ObjectStore, prefix: str) -> list[int]:
    """Every seq in the store's raw segments, as many times as it is there."""
    fs, seqs = _client(store), []
    for key in sorted(_objects(store, prefix)):
        if key.startswith("raw/"):
            with fs.open_input_file(f"{prefix}/{key}") as source:
                seqs += pq.read_table(source, columns=["seq"]).column("seq").to_pylist()
    return sorted(seqs)


def store_last(store: ObjectStore, prefix: str) -> int:
    """The highest seq the store's raw segments hold, by their names (0 if none)."""
    names = [key.rsplit("/", 1)[-1] for key in _objects(store, prefix) if key.startswith("raw/")]
    return max((int(name.split("-")[1].split(".")[0]) for name in names), default=0)


def local_files(spool_dir: Path, table: str = "raw") -> list[Path]:
    return sorted((spool_dir / table).rglob("*.parquet"))


def stop(proc: subprocess.Popen[str]) -> tuple[dict, str]:
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=STOP_WITHIN_S)
    assert proc.returncode == 0, stderr
    return summary_of(stdout), stderr


def test_a_recording_to_a_bucket_holds_every_seq_once_and_leaves_nothing_behind(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    prefix, spool = _prefix(object_store, "record"), tmp_path / "spool"
    with ScriptedFeed([Send.cmds(1, 1500), Pause(0.5), Send.cmds(1501, 3000)]) as feed:
        proc = start_recording(
            feed.url, f"s3://{prefix}", "--spool-dir", spool, *RECORD_ARGS, env=object_store.env()
        )
        wait_for(lambda: store_last(object_store, prefix) == 3000, "every seq on the store")
        summary, stderr = stop(proc)
    assert store_seqs(object_store, prefix) == list(range(1, 3001))
    assert summary["archive"] == f"s3://{prefix}"
    assert summary["appended"] == 3000 and summary["uploads_waiting"] == 0
    objects = _objects(object_store, prefix)
    assert objects["seq-space"] > 0 and not any(k.startswith(("spool/", ".")) for k in objects)
    assert not [p for p in spool.rglob("*.parquet") if ".uploaded" not in p.parts]
    assert not list((spool / "spool").glob("*.wal"))
    assert re.search(r"waiting to upload \d+", stderr)
    assert SECRET_KEY not in stderr
    # The store is an archive every reader takes: SQL counts the same commands.
    sql = replica(
        "sql",
        f"s3://{prefix}",
        "select count(*), count(distinct seq) from raw_cmds",
        "--format",
        "csv",
        env=object_store.env(),
    )
    assert sql.returncode == 0, sql.stderr
    assert sql.stdout.split()[-1] == "3000,3000"


def test_kill_9_mid_upload_then_a_restart_puts_every_seq_on_the_store_once(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    """A segment of 16 MB of incompressible payloads goes up in parts; the recorder is killed
    as soon as it is sealed, mid-upload, and again once a restart has uploaded it and more,
    with commands still in the spool."""
    prefix, spool = _prefix(object_store, "kill"), tmp_path / "spool"
    big = [frame(seq, raw=os.urandom(16_000)) for seq in range(1, 1001)]
    first = [Send(tuple(big)), Send.cmds(1001, 1001)]  # 1001 seals the unit
    scripts = [first, [Send.cmds(990, 2500)], [Send.cmds(2400, 3000), Close(1000)]]
    args = (f"s3://{prefix}", "--spool-dir", spool, "--segment-seconds", "600")
    args += ("--segment-rows", "1000", "--status-seconds", "60")
    with ScriptedFeed(*scripts) as feed:
        proc = start_recording(feed.url, *args, env=object_store.env())
        wait_long(lambda: local_files(spool), "the big segment sealed in the spool dir")
        proc.kill()
        proc.communicate(timeout=PATIENCE_S)
        sealed = local_files(spool)
        assert [p.name for p in sealed] == [f"{1:020d}-{1000:020d}.parquet"]
        on_store = _objects(object_store, prefix)
        key = sealed[0].relative_to(spool).as_posix()
        # Whatever the kill interrupted, no object is half there.
        assert on_store.get(key) in (None, sealed[0].stat().st_size)

        proc = start_recording(feed.url, *args, env=object_store.env())
        wait_long(lambda: store_last(object_store, prefix) >= 2000, "the second connection")
        proc.kill()
        proc.communicate(timeout=PATIENCE_S)

        proc = start_recording(feed.url, *args, env=object_store.env())
        # The third connection's close, once every frame was read, brings a fourth.
        wait_long(lambda: len(feed.seen.connected_at) == 4, "the third connection's frames")
        summary, _ = stop(proc)
    assert store_seqs(object_store, prefix) == list(range(1, 3001))
    assert summary["uploads_waiting"] == 0 and not local_files(spool)


def test_a_store_that_goes_away_mid_run_and_comes_back_loses_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    spool, log = tmp_path / "spool", tmp_path / "stderr.log"
    stopped = threading.Event()
    script = [Send.cmds(1, 1000), WaitFor(stopped), Send.cmds(1001, 2000), Pause(0.5)]
    feed = ScriptedFeed([*script, Send.cmds(2001, 3000)]).__enter__()
    with running_store(directory) as store:
        prefix = _prefix(store, "outage")
        args = (feed.url, f"s3://{prefix}", "--spool-dir", spool, *RECORD_ARGS)
        with open(log, "w") as stderr:  # read while it runs
            proc = subprocess.Popen(
                [sys.executable, "-m", "replica", "record", *map(str, args)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, **store.env()},
            )
        wait_for(lambda: store_last(store, prefix) == 1000, "the first seqs on the store")
        ports = store.ports
    stopped.set()
    try:
        # The store is down: segments wait in the spool dir, the recording goes on.
        wait_for(lambda: len(local_files(spool)) >= 2, "segments waiting for the store")
        wait_for(lambda: proc.poll() is None and _spooled_last(spool) >= 3000, "the last seqs")
        wait_long(lambda: "cannot upload" in log.read_text(), "a failed upload, to be retried")
        with running_store(directory, ports) as again:
            wait_for(lambda: not local_files(spool), "the waiting segments uploaded")
            summary, _ = stop(proc)
            seqs = store_seqs(again, prefix)
    finally:
        if proc.poll() is None:
            proc.kill()
        feed.__exit__(None, None, None)
    assert seqs == list(range(1, 3001))
    assert summary["uploads_waiting"] == 0 and summary["gaps"] == 0
    stderr = log.read_text()
    waiting = [int(n) for n in re.findall(r"waiting to upload (\d+)", stderr)]
    assert max(waiting) >= 2, "the status line said segments were waiting"
    assert SECRET_KEY not in stderr


def test_a_stop_and_a_restart_while_the_store_is_down_lose_nothing(tmp_path: Path) -> None:
    """Stopped with the store down, the recorder leaves the files waiting (exit 0, counted in
    its summary); started again still without the store, it resumes from what the spool dir
    knows; once the store is back, everything goes up, each seq once."""
    directory, spool = tmp_path / "store", tmp_path / "spool"
    directory.mkdir()
    stopped = threading.Event()
    scripts = [[Send.cmds(1, 1000), WaitFor(stopped), Send.cmds(1001, 2000), Close(1000)]]
    scripts += [[], [Send.cmds(1990, 2500), Close(1000)]]  # the first run's reconnection; the next
    with ScriptedFeed(*scripts) as feed:
        with running_store(directory) as store:
            prefix = _prefix(store, "down")
            args = (feed.url, f"s3://{prefix}", "--spool-dir", spool, *RECORD_ARGS)
            proc = start_recording(*args, env=store.env())
            wait_for(lambda: store_last(store, prefix) == 1000, "the first seqs on the store")
            ports, env = store.ports, store.env()
        stopped.set()
        wait_for(lambda: len(feed.seen.connected_at) == 2, "the first run's frames")
        summary, stderr = stop(proc)
        assert summary["uploads_waiting"] >= 1 and summary["last_seq"] == 2000
        assert "wait in" in stderr

        proc = start_recording(*args, env=env)
        try:
            wait_long(lambda: len(feed.seen.connected_at) == 4, "the second run's frames")
            with running_store(directory, ports) as again:
                wait_long(lambda: _spooled_last(spool) == 0, "the waiting files uploaded")
                summary, stderr = stop(proc)
                seqs = store_seqs(again, prefix)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "resuming after seq 2000, as the spool dir knows" in stderr
    assert summary["duplicates"] == 11 and summary["uploads_waiting"] == 0
    assert seqs == list(range(1, 2501))


def wait_long(condition: Callable[[], object], what: str) -> None:
    """``wait_for`` with a guard for the big segment's many megabytes on a busy machine."""
    deadline = time.monotonic() + STOP_WITHIN_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _spooled_last(spool: Path) -> int:
    """The highest seq sealed in the spool dir (0 if none)."""
    names = [p.stem.split("-")[1] for p in local_files(spool)]
    return max(map(int, names), default=0)


def test_a_fresh_spool_dir_resumes_where_the_store_ends(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    """The spool dir lost (a new machine): the store says where the archive ends, so the seqs
    sent again are duplicates, not archived twice, and the time away is a restart gap."""
    prefix = _prefix(object_store, "fresh")
    scripts = [[Send.cmds(1, 1000)], [Send.cmds(900, 1500), Close(1000)]]
    with ScriptedFeed(*scripts) as feed:
        args = (f"s3://{prefix}", "--spool-dir", tmp_path / "first", *RECORD_ARGS)
        proc = start_recording(feed.url, *args, env=object_store.env())
        wait_for(lambda: store_last(object_store, prefix) == 1000, "the first run's seqs")
        stop(proc)
        args = (f"s3://{prefix}", "--spool-dir", tmp_path / "second", *RECORD_ARGS)
        proc = start_recording(feed.url, *args, env=object_store.env())
        # The second script's close, once every frame was read, brings a third connection.
        wait_for(lambda: len(feed.seen.connected_at) == 3, "the second run's frames")
        summary, stderr = stop(proc)
    assert "resuming" in stderr and summary["duplicates"] == 101
    assert store_seqs(object_store, prefix) == list(range(1, 1501))


def test_a_store_of_node_heights_is_refused(object_store: ObjectStore, tmp_path: Path) -> None:
    prefix = _prefix(object_store, "node")
    with _client(object_store).open_output_stream(f"{prefix}/seq-space") as marker:
        marker.write(b"node\n")
    result = replica(
        "record",
        "ws://127.0.0.1:9",
        f"s3://{prefix}",
        "--spool-dir",
        tmp_path / "spool",
        env=object_store.env(),
    )
    assert result.returncode == 2, result.stderr
    assert f"s3://{prefix} holds node block heights" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_store_with_nothing_recorded_locally_is_one_line(tmp_path: Path) -> None:
    """Where the archive ends is unknown: one line naming the store and what to check."""
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    result = replica(
        "record",
        "ws://127.0.0.1:9",
        "s3://archives/x",
        "--spool-dir",
        tmp_path / "spool",
        "--endpoint-url",
        "http://127.0.0.1:9",
        env=env,
        timeout=STOP_WITHIN_S,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "cannot learn where the archive ends" in lines[0], result.stderr
    assert "check the endpoint" in lines[0] and SECRET_KEY not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_as_archive_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = replica("record", "ws://127.0.0.1:9", tmp_path / "file")
    assert result.returncode == 2 and "is a file" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spool-dir", "x"], "--spool-dir and --endpoint-url are for an s3:// ARCHIVE"),
        (["--endpoint-url", "http://127.0.0.1:9"], "are for an s3:// ARCHIVE"),
    ],
)
def test_store_options_with_a_local_archive_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = replica("record", "ws://127.0.0.1:9", tmp_path / "a", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_recording_to_a_bucket_serves_its_clients_from_the_store_the_staging_and_live(
    object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--serve on a store recording: a client from seq 1 reads what is already uploaded (from
    the store), then what is sealed or spooled locally, then live, each seq once in order."""
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    prefix, go = _prefix(object_store, "relay"), threading.Event()

    async def client(url: str, last: int) -> list[int]:
        async with connect(f"{url}/?from_seq=1", max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            seqs = [json.loads(await ws.recv())["seq"]]
            go.set()  # the rest of the feed is sent while this client reads
            async with asyncio.timeout(PATIENCE_S):
                while seqs[-1] < last:
                    seqs.append(json.loads(await ws.recv())["seq"])
            return seqs

    feed = ScriptedFeed([Send.cmds(1, 1500), WaitFor(go), Send.cmds(1501, 3000)])
    args = ("--spool-dir", tmp_path / "spool", *RECORD_ARGS)
    with feed, Recording(feed.url, f"s3://{prefix}", tmp_path / "record.log", *args) as recording:
        try:
            wait_for(lambda: store_last(object_store, prefix) == 1500, "1..1500 on the store")
            wait_for(lambda: not local_files(tmp_path / "spool"), "1..1500 only on the store")
            assert asyncio.run(client(recording.url, 3000)) == list(range(1, 3001))
        finally:
            go.set()
        recording.stop()
    assert store_seqs(object_store, prefix) == list(range(1, 3001))


@pytest.mark.benchmark
def test_the_store_recording_benchmark_runs_once(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "record_store.py"
    result = subprocess.run(
        [sys.executable, script, "--quick", "--json", tmp_path / "out.json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^(PASS|MISS) throughput recording to store/disk ", result.stdout, re.M)
    assert "throughput store/disk" in (tmp_path / "out.json").read_text()
