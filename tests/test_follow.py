"""Following an archive while it grows: ``replica serve --follow`` to several clients at once,
``replica replay --follow`` and ``replay(follow=True)``, against real subprocesses on loopback.

The test process is the writer: as the recorder does, it spools each unit's commands in small
batches (``SpoolWriter``), then seals the unit's segment, then deletes its spool, while the
server or replay (another process) follows. When a follower starts, the archive holds sealed
segments and one unit still only in the spool. Each follower must end with exactly the
ledger's commands from its ``from_seq``: none twice, none skipped at the seam between what was
archived when it started and what came after; the ledger's one real gap shows as a seq jump.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from replica.recorder.frames import Command
from replica.recorder.spool import SpoolWriter, read_spool
from replica.replay.live import LiveHub, follow_frames
from replica.replay.metrics import ServeMetrics
from replica.replay.records import ReplayGap, ReplayRecord
from replica.replay.server import DiskSyncServer
from replica.schemas.archive import ArchiveLayout
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

import replica
from tests.conftest import PATIENCE_S
from tests.rawarchive import write_segment
from tests.served import Served, close_code, free_port, scrape, stalled_and_reader

FIRST, LAST = 1000, 1399
REAL_GAP = range(1250, 1260)
LEDGER = [seq for seq in range(FIRST, LAST + 1) if seq not in REAL_GAP]
SEALED_AT_START = 100  # the ledger's first 100 commands are sealed before anyone follows
CHUNK = 25  # commands per unit: the next 25 are only spooled when followers start
IN_SPOOL = LEDGER[SEALED_AT_START : SEALED_AT_START + CHUNK]


def rows(seqs: list[int], size: int = 16) -> list[dict]:
    """Rows received now (so follow lag is real), one ms apart."""
    now_us = time.time_ns() // 1000
    return [
        {
            "seq": seq,
            "ts_ms": now_us // 1000 + i,
            "ingest_ts_us": now_us + 1000 * i,
            "publish_ts_us": now_us + 1000 * i + 20,
            "recv_ts_us": now_us + 1000 * i + 200,
            "raw": (f"cmd-{seq}-".encode() * size)[:size],
        }
        for i, seq in enumerate(seqs)
    ]


def spool(archive: Path, seqs: list[int], size: int = 16, pause: float = 0.0) -> list[dict]:
    """Spools a unit's commands as the recorder does, five at a time; returns its rows."""
    unit = rows(seqs, size)
    spooler = SpoolWriter(ArchiveLayout(archive).spool_dir)
    spooler.open(f"u{seqs[0]}", {"unit": f"u{seqs[0]}"})
    for i in range(0, len(unit), 5):
        spooler.append(
            f"u{seqs[0]}", [(row["recv_ts_us"], command(row)) for row in unit[i : i + 5]]
        )
        time.sleep(pause)
    spooler.close_all()
    return unit


def command(row: dict) -> Command:
    return Command(row["seq"], row["ts_ms"], row["ingest_ts_us"], row["publish_ts_us"], row["raw"])


def seal(archive: Path, unit: list[dict]) -> None:
    """Publishes the unit's segment, then deletes its spool, in the recorder's order."""
    write_segment(archive, unit)
    (ArchiveLayout(archive).spool_dir / f"u{unit[0]['seq']}.wal").unlink()


def chunks(seqs: list[int]) -> list[list[int]]:
    return [seqs[i : i + CHUNK] for i in range(0, len(seqs), CHUNK)]


class Writer(threading.Thread):
    """Records as the recorder does: seals the unit left in the spool, then spools and seals
    each of the given units in turn."""

    def __init__(self, archive: Path, units: list[list[int]], size: int = 16) -> None:
        super().__init__(daemon=True)
        self.archive, self.units, self.size = archive, units, size
        self.sealed = threading.Event()  # set once a third of them are sealed

    def run(self) -> None:
        seal(self.archive, rows_in_spool(self.archive))
        for i, seqs in enumerate(self.units):
            seal(self.archive, spool(self.archive, seqs, self.size, pause=0.01))
            if i >= len(self.units) // 3:
                self.sealed.set()
        self.sealed.set()


def rows_in_spool(archive: Path) -> list[dict]:
    """The rows of the unit the fixture left in the spool, as spooled."""
    (path,) = ArchiveLayout(archive).spool_dir.glob("*.wal")
    records = read_spool(path).records
    return [
        {**item._asdict(), "recv_ts_us": recv_us}
        for recv_us, item in records
        if isinstance(item, Command)
    ]


async def read_until_last(ws: ClientConnection) -> list[str]:
    frames = []
    async with asyncio.timeout(PATIENCE_S):
        while not frames or json.loads(frames[-1])["seq"] < LAST:
            frames.append(str(await ws.recv()))
    return frames


def seqs_of(frames: list[str]) -> list[int]:
    return [json.loads(frame)["seq"] for frame in frames]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    for seqs in chunks(LEDGER[:SEALED_AT_START]):
        write_segment(root, rows(seqs))
    spool(root, IN_SPOOL)
    return root


def test_serve_follow_sends_every_client_the_ledger_from_its_point_once(
    archive: Path, tmp_path: Path
) -> None:
    metrics_port = free_port()
    starts = {"live": None, "sealed": 1020, "spooled": IN_SPOOL[10], "edge": IN_SPOOL[-1]}
    starts["ahead"] = 1300
    writer = Writer(archive, chunks(LEDGER[SEALED_AT_START + CHUNK :]))

    async def clients(url: str) -> dict[str, list[str]]:
        opened: dict[str, ClientConnection] = {}
        hellos = []
        for name, start in starts.items():
            query = "" if start is None else f"?from_seq={start}"
            opened[name] = await connect(f"{url}/{query}", max_size=None)
            hellos.append(json.loads(await opened[name].recv()))
        assert {hello["type"] for hello in hellos} == {"connected"}
        # Before anything more is sealed: what is only in the spool is sent already.
        early = []
        async with asyncio.timeout(PATIENCE_S):
            while not early or json.loads(early[-1])["seq"] < IN_SPOOL[-1]:
                early.append(str(await opened["spooled"].recv()))
        assert seqs_of(early) == IN_SPOOL[10:]
        writer.start()
        await asyncio.to_thread(writer.sealed.wait, PATIENCE_S)
        # Joins while segments are being sealed: its catch-up meets the live edge mid-stream.
        opened["joining"] = await connect(f"{url}/?from_seq={FIRST}", max_size=None)
        hellos.append(json.loads(await opened["joining"].recv()))
        received = dict(
            zip(opened, await asyncio.gather(*map(read_until_last, opened.values())), strict=True)
        )
        received["spooled"] = early + received["spooled"]
        metrics = await asyncio.to_thread(scrape, metrics_port)
        sent = sum(map(len, received.values())) + len(hellos)
        sent_bytes = sum(len(frame.encode()) for frames in received.values() for frame in frames)
        sent_bytes += sum(len(json.dumps(hello, separators=(",", ":"))) for hello in hellos)
        assert metrics["replica_serve_clients_connected"] == len(opened)
        assert metrics["replica_serve_frames_sent_total"] == sent
        assert metrics["replica_serve_bytes_sent_total"] == sent_bytes
        assert metrics["replica_serve_follow_lag_seconds_count"] > 0
        assert metrics["replica_serve_slow_client_closes_total"] == 0
        assert 'replica_serve_client_backlog_frames{client="1"}' in metrics
        for ws in opened.values():
            await ws.close()
        return received

    with Served(archive, tmp_path, "--follow", "--metrics-port", str(metrics_port)) as served:
        received = asyncio.run(clients(served.url))
        assert served.stop() == 0
    starts["live"], starts["joining"] = IN_SPOOL[-1] + 1, FIRST
    for name, start in starts.items():
        assert start is not None
        assert seqs_of(received[name]) == [seq for seq in LEDGER if seq >= start], name


def test_serve_follow_closes_a_client_that_stops_reading_while_others_keep_up(
    archive: Path, tmp_path: Path
) -> None:
    """Large commands fill every buffer of a client that reads nothing; it is closed with 1013,
    and a client beside it still gets every command."""
    metrics_port = free_port()
    big = [seq for seq in LEDGER[SEALED_AT_START + CHUNK :] if seq < 1250]
    writer = Writer(archive, [big[i : i + 10] for i in range(0, len(big), 10)], size=64 * 1024)

    async def clients(url: str, log: Path) -> tuple[int, list[int]]:
        async with stalled_and_reader(url) as (stalled, reader):
            writer.start()
            frames = []
            async with asyncio.timeout(PATIENCE_S):
                while not frames or frames[-1] < big[-1]:
                    frames.append(json.loads(await reader.recv())["seq"])
            return await close_code(stalled, log), frames

    with Served(archive, tmp_path, "--follow", "--metrics-port", str(metrics_port)) as served:
        code, frames = asyncio.run(clients(served.url, served.log))
        assert scrape(metrics_port)["replica_serve_slow_client_closes_total"] == 1
        assert served.stop() == 0
    assert code == 1013
    assert frames == big


def test_serve_follow_refuses_what_it_cannot_do(archive: Path, tmp_path: Path) -> None:
    async def status(url: str) -> int:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        return refused.value.response.status_code

    key_file = tmp_path / "key"
    key_file.write_text("ak_live_FOLLOW_SECRET")
    with Served(archive, tmp_path, "--follow", "--api-key-file", str(key_file)) as served:
        assert asyncio.run(status(served.url + "/?api_key=wrong")) == 401
        bad = served.url + "/?api_key=ak_live_FOLLOW_SECRET&from_seq=1&speed=2"
        assert asyncio.run(status(bad)) == 400
        assert served.stop() == 0
    assert "takes only from_seq" in served.log.read_text()
    assert "ak_live_FOLLOW_SECRET" not in served.log.read_text()


def test_replay_follow_prints_new_commands_until_ctrl_c(archive: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "replica", "replay", archive, "--follow", "--from-seq", "1010"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        writer = Writer(archive, chunks(LEDGER[SEALED_AT_START + CHUNK :]))
        assert process.stdout is not None
        seqs = [json.loads(process.stdout.readline())["seq"]]
        writer.start()
        while seqs[-1] < LAST:
            line = process.stdout.readline()
            assert line, "replay --follow ended by itself"
            seqs.append(json.loads(line)["seq"])
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=PATIENCE_S)
    finally:
        process.kill()
    assert seqs == [seq for seq in LEDGER if seq >= 1010]
    assert process.returncode == 130
    assert re.search(r"seqs 1250-1259", stderr)
    assert f"--from-seq {LAST + 1} resumes" in stderr
    assert "Traceback" not in stderr


def test_the_api_follows_with_for_and_async_for(archive: Path) -> None:
    followed = replica.open(archive)
    writer = Writer(archive, chunks(LEDGER[SEALED_AT_START + CHUNK :]))
    writer.start()
    items = []
    for item in followed.replay(from_seq=1240, follow=True):
        items.append(item)
        if not isinstance(item, ReplayGap) and item.seq == LAST:
            break
    assert [item for item in items if isinstance(item, ReplayGap)] == [
        ReplayGap(1250, 1259, 10, None)
    ]
    assert [item.seq for item in items if not isinstance(item, ReplayGap)] == [
        seq for seq in LEDGER if seq >= 1240
    ]

    async def tail() -> list[int]:
        seqs = []
        async for item in followed.replay(from_seq=1390, follow=True):
            assert not isinstance(item, ReplayGap)
            seqs.append(item.seq)
            if item.seq == LAST:
                return seqs
        raise AssertionError("unreachable: a follow never ends")

    writer.join(PATIENCE_S)
    assert asyncio.run(tail()) == list(range(1390, LAST + 1))
    with pytest.raises(replica.UsageError, match="takes no to_seq"):
        followed.replay(from_seq=1, to_seq=5, follow=True)


def test_a_client_whose_live_buffer_fills_is_closed_with_1013(archive: Path) -> None:
    """A client that reads, but slower than commands come, fills its bounded buffer: the hub
    never waits for it, and it is closed with 1013 rather than skip commands. The first
    command goes straight to its socket (it was idle), and fills the connection's write buffer;
    the next is buffered, and overflows."""
    hub = LiveHub(limit_bytes=10)
    metrics = ServeMetrics()
    server = DiskSyncServer(follow_frames(ArchiveLayout(archive), hub, metrics), metrics=metrics)

    async def main() -> tuple[int, list[str]]:
        port = await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.recv()  # connected: subscribed
                for seq in range(2000, 2100):  # all at once: faster than it reads
                    hub.publish_record(ReplayRecord(seq, 0, 0, 0, 0, b"x" * 65536, None))
                frames = []
                with pytest.raises(ConnectionClosedError) as closed:
                    async with asyncio.timeout(PATIENCE_S):
                        while True:
                            frames.append(str(await ws.recv()))
                assert closed.value.rcvd is not None
                return closed.value.rcvd.code, frames
        finally:
            await server.close()

    code, frames = asyncio.run(main())
    assert code == 1013
    assert [json.loads(frame)["seq"] for frame in frames] == list(range(2000, 2000 + len(frames)))
    assert len(frames) < 100
    assert metrics.registry.get_sample_value("replica_serve_slow_client_closes_total") == 1


def test_a_clients_live_buffer_is_bounded_by_bytes_not_by_commands() -> None:
    """Thousands of small commands fit in a client's buffer; four hundred of 64 KiB (25 MiB)
    do not: the client is marked too slow long before its buffer holds them all."""

    def buffered(size: int, count: int) -> tuple[int, bool]:
        hub = LiveHub()
        subscriber = hub.subscribe()
        for seq in range(1, count + 1):
            hub.publish_record(ReplayRecord(seq, 0, 0, 0, 0, b"x" * size, None))
        return len(subscriber), subscriber.overflowed

    assert buffered(100, 2000) == (2000, False)
    assert buffered(64 * 1024, 400) == (0, True)


def test_an_idle_live_client_is_sent_a_command_in_the_call_that_publishes_it(
    archive: Path,
) -> None:
    """A client waiting for live commands gets each batch written to its socket by
    ``publish`` itself: nothing is left in its buffer for its send task to pick up in a later
    turn of the loop (the relay's latency: no hop between the recorder and the socket)."""
    hub = LiveHub()
    server = DiskSyncServer(follow_frames(ArchiveLayout(archive), hub))

    async def main() -> list[tuple[int, int]]:
        port = await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.recv()  # connected: subscribed, and its send task waits for commands
                got = []
                for seq in (5000, 5001):
                    hub.publish_record(ReplayRecord(seq, 0, 0, 0, 0, b"x", None))
                    held = hub.backlog()  # before this task lets the loop run anything else
                    got.append((held, json.loads(await ws.recv())["seq"]))
                return got
        finally:
            await server.close()

    assert asyncio.run(main()) == [(0, 5000), (0, 5001)]
