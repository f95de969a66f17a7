"""The replay server against real WebSocket clients on loopback: the Disk-Sync handshake and
key check, a replay per connection chosen by the query string, refusals with a reason, several
clients at once, and 1013 for a client that stops reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

import pyarrow as pa
import pytest
from replica.replay.server import CLIENT_BATCH_BYTES, DiskSyncServer, archive_frames
from replica.schemas.archive import ArchiveLayout
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.conftest import PATIENCE_S
from tests.replayarchives import (
    FEED_GAP,
    FEED_LINES,
    damage_row_group,
    record_fixture_feed,
    rows_for,
    write_segments,
)

SECRET = "ak_live_REPLAY_SERVER_SECRET"
FEED_SEQS = [json.loads(line)["seq"] for line in FEED_LINES]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> ArchiveLayout:
    return ArchiveLayout(record_fixture_feed(tmp_path_factory.mktemp("replay") / "archive"))


def run(server: DiskSyncServer, client) -> object:
    """Start ``server`` on a free port, run ``client(url)``, close the server (a close that
    hangs fails the test)."""

    async def main():
        port = await server.start()
        try:
            return await client(f"ws://127.0.0.1:{port}")
        finally:
            async with asyncio.timeout(PATIENCE_S):
                await server.close()

    return asyncio.run(main())


async def take(url: str, count: int, **kwargs) -> tuple[dict, list[str]]:
    """The connected frame and the next ``count`` frames."""
    async with connect(url, **kwargs) as ws:
        hello = json.loads(await ws.recv())
        return hello, [await ws.recv() for _ in range(count)]


def test_a_feed_client_gets_connected_then_the_archive(layout: ArchiveLayout) -> None:
    server = DiskSyncServer(archive_frames(layout, default_speed=None), api_key=SECRET)
    hello, frames = run(
        server, lambda url: take(url, len(FEED_LINES), additional_headers={"x-api-key": SECRET})
    )
    assert (hello["type"], hello["feed"]) == ("connected", "disk-sync")
    assert frames == FEED_LINES


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/", {}), ("/", {"x-api-key": "wrong"}), ("/?api_key=wrong", {})],
)
def test_a_wrong_or_missing_key_gets_401(layout: ArchiveLayout, path: str, headers) -> None:
    server = DiskSyncServer(archive_frames(layout, default_speed=None), api_key=SECRET)
    with pytest.raises(InvalidStatus) as refused:
        run(server, lambda url: take(url + path, 1, additional_headers=headers))
    assert refused.value.response.status_code == 401


def test_no_key_reaches_the_logs_even_at_debug(
    layout: ArchiveLayout, caplog: pytest.LogCaptureFixture
) -> None:
    """websockets logs request headers at DEBUG: the server's key, a client's wrong key and a
    key in the query are all masked."""
    other = "ak_live_SOME_CLIENTS_OWN_KEY"
    server = DiskSyncServer(archive_frames(layout, default_speed=None), api_key=SECRET)

    async def clients(url: str) -> None:
        await take(f"{url}/?api_key={SECRET}&to_seq={FEED_SEQS[1]}", 2)
        with pytest.raises(InvalidStatus):
            await take(url, 1, additional_headers={"x-api-key": other})

    with caplog.at_level(logging.DEBUG, logger="websockets.server"):
        run(server, clients)
    assert "x-api-key: ***" in caplog.text and "api_key=***" in caplog.text
    assert SECRET not in caplog.text and other not in caplog.text


def test_each_connection_is_its_own_replay(layout: ArchiveLayout) -> None:
    low, high = FEED_GAP
    ts = {json.loads(line)["seq"]: json.loads(line)["ts_ms"] for line in FEED_LINES}
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts[FEED_SEQS[100]] // 1000))
    by_time = [s for s in FEED_SEQS if ts[s] >= ts[FEED_SEQS[100]] // 1000 * 1000]
    around_gap = [*range(low - 3, low), *range(high + 1, high + 4)]
    queries = {
        f"/?from_seq={low - 3}&to_seq={high + 3}&speed=max": around_gap,
        f"/?start={start}Z&speed=50000": by_time,
        "/?speed=max": FEED_SEQS,
    }
    server = DiskSyncServer(archive_frames(layout, default_speed=1.0))

    async def clients(url: str) -> list[list[int]]:
        replies = await asyncio.gather(
            *(take(url + query, len(expected)) for query, expected in queries.items())
        )
        return [[json.loads(frame)["seq"] for frame in frames] for _, frames in replies]

    assert run(server, clients) == list(queries.values())


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("speed=0", "speed '0' is not a number of at least 1e-06 or max"),
        ("from_seq=abc", "query parameter from_seq='abc' is not a seq"),
        ("from_seq=5&to_seq=3", "from_seq 5 is above to_seq 3"),
        ("start=yesterday", "start='yesterday' is not an ISO 8601 time"),
        ("end=2026-11-20T00:00", "has no time zone"),
        ("sped=1", "unknown query parameter 'sped'; use any of from_seq, to_seq"),
        ("speed=1&speed=2", "query parameter speed is given 2 times"),
    ],
)
def test_a_bad_query_gets_400_with_the_reason(
    layout: ArchiveLayout, query: str, reason: str
) -> None:
    server = DiskSyncServer(archive_frames(layout, default_speed=1.0))
    with pytest.raises(InvalidStatus) as refused:
        run(server, lambda url: take(f"{url}/?{query}", 1))
    response = refused.value.response
    assert response.status_code == 400
    assert reason in response.body.decode() and response.body.count(b"\n") == 1


def test_a_client_that_stops_reading_is_closed_with_1013_after_every_frame_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Large frames and a tiny receive buffer fill every buffer fast; the client resumes
    reading only once the server has given up on it, and then finds the frames in order,
    none skipped, followed by the close frame."""
    write_segments(tmp_path, rows_for(list(range(300)), size=64 * 1024))
    server = DiskSyncServer(
        archive_frames(ArchiveLayout(tmp_path), default_speed=None), slow_client_timeout=0.2
    )

    async def stalled_client(url: str) -> tuple[list[int], int]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        async with connect(url, sock=sock, max_queue=1) as ws:
            await ws.recv()  # connected; from now on the client reads nothing
            deadline = time.monotonic() + PATIENCE_S
            while "closing with 1013" not in caplog.text:
                assert time.monotonic() < deadline, "the server never gave up on the client"
                await asyncio.sleep(0.02)
            seqs = []
            with pytest.raises(ConnectionClosedError) as closed:
                async for frame in ws:
                    seqs.append(json.loads(frame)["seq"])
            return seqs, closed.value.rcvd.code

    with caplog.at_level(logging.INFO, logger="replica.replay.server"):
        seqs, code = run(server, stalled_client)
    assert code == 1013
    assert 0 < len(seqs) < 300 and seqs == list(range(len(seqs)))


def test_an_archive_that_fails_under_a_replay_closes_it_with_1011(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (path,) = write_segments(tmp_path, rows_for(list(range(300))), row_group_rows=100)
    damage_row_group(path, 1)
    server = DiskSyncServer(archive_frames(ArchiveLayout(tmp_path), default_speed=None))

    async def client(url: str) -> tuple[list[int], int]:
        seqs = []
        async with connect(url) as ws:
            await ws.recv()
            with pytest.raises(ConnectionClosedError) as closed:
                async for frame in ws:
                    seqs.append(json.loads(frame)["seq"])
        return seqs, closed.value.rcvd.code

    with caplog.at_level(logging.INFO, logger="replica.replay.server"):
        seqs, code = run(server, client)
    assert (seqs, code) == (list(range(100)), 1011)
    assert f"replay failed: cannot read segment {path}" in caplog.text


def test_clients_that_leave_a_slow_replay_free_its_batches_at_once(tmp_path: Path) -> None:
    """At speed 0.000001 a client's second command is due in 10,000 s; each of these reads
    the first and leaves. Their replays end with them: what they had read (a batch of about
    ``CLIENT_BATCH_BYTES`` in hand and one ahead, and the open segment of a reader not parked
    yet) is freed, not held until the command would have been due."""
    write_segments(tmp_path, rows_for(list(range(1000)), size=1024), row_group_rows=1000)
    server = DiskSyncServer(archive_frames(ArchiveLayout(tmp_path), default_speed=None))

    async def clients(url: str) -> tuple[int, int]:
        before = pa.total_allocated_bytes()
        visits = [await connect(f"{url}/?speed=0.000001") for _ in range(20)]
        for ws in visits:
            await ws.recv()  # connected
            await ws.recv()
        held = pa.total_allocated_bytes() - before
        await asyncio.gather(*(ws.close() for ws in visits))
        deadline = time.monotonic() + PATIENCE_S
        while pa.total_allocated_bytes() > before and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return held, pa.total_allocated_bytes() - before

    held, left = run(server, clients)
    assert held > 20 * CLIENT_BATCH_BYTES and left <= 0
