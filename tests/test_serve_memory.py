"""What an idle client costs ``replica serve``: bounded by its batches, not by the archive.

Each client here connects to a real server on loopback and then waits: at speed max it stops
reading (its buffers fill and the server's send blocks), paced it waits hours for its next
command, following it stops reading during the catch-up from the archive. The archive is one
row group of 8 MiB of payloads, so a reader left in the middle of it holds a decompressed
Parquet page of about 1 MiB; an idle client must hold no more than its batches of
``CLIENT_BATCH_BYTES``, counted in Arrow's allocations (not the allocator's resident memory).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from replica.replay.live import LiveHub, follow_frames
from replica.replay.server import CLIENT_BATCH_BYTES, DiskSyncServer, FrameSource, archive_frames
from replica.schemas.archive import ArchiveLayout
from websockets.asyncio.client import connect

from tests.conftest import PATIENCE_S
from tests.replayarchives import rows_for, write_segments

CLIENTS = 6
ROWS, PAYLOAD = 8192, 1024  # one row group of 8 MiB of payloads
# In hand and read ahead, a batch each, and room for the columns beside the payloads.
HELD_PER_CLIENT = 4 * CLIENT_BATCH_BYTES


@pytest.fixture(scope="module")
def big_row_group(tmp_path_factory: pytest.TempPathFactory) -> ArchiveLayout:
    archive = tmp_path_factory.mktemp("big-row-group") / "archive"
    rows = rows_for(list(range(ROWS)), size=PAYLOAD)
    write_segments(archive, rows, per_segment=ROWS, row_group_rows=ROWS)
    return ArchiveLayout(archive)


def replayed(layout: ArchiveLayout) -> FrameSource:
    return archive_frames(layout, default_speed=None)


def followed(layout: ArchiveLayout) -> FrameSource:
    return follow_frames(layout, LiveHub())


@pytest.mark.parametrize(
    ("source", "query"),
    [
        (replayed, "?speed=max"),
        (replayed, "?speed=0.0001"),  # the next command 100 s away
        (followed, "?from_seq=0"),
    ],
    ids=["speed-max", "paced", "follow"],
)
def test_an_idle_client_holds_its_batches_not_the_row_group(
    big_row_group: ArchiveLayout, source, query: str
) -> None:
    server = DiskSyncServer(source(big_row_group), slow_client_timeout=10 * PATIENCE_S)

    async def main() -> tuple[int, int]:
        before = pa.total_allocated_bytes()
        port = await server.start()
        try:
            # max_queue=1: a client that takes no frame stops reading the socket, so the
            # server's sends block once the kernel's buffers are full.
            clients = [
                await connect(f"ws://127.0.0.1:{port}/{query}", max_queue=1, compression=None)
                for _ in range(CLIENTS)
            ]
            for client in clients:
                await client.recv()  # connected
                await client.recv()  # the first command: its replay is reading
            busiest, deadline = 0, time.monotonic() + PATIENCE_S
            while (held := pa.total_allocated_bytes() - before) > CLIENTS * HELD_PER_CLIENT:
                busiest = max(busiest, held)
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            for client in clients:
                client.transport.abort()
            return busiest, held
        finally:
            async with asyncio.timeout(PATIENCE_S):
                await server.close()

    busiest, held = asyncio.run(main())
    assert held <= CLIENTS * HELD_PER_CLIENT, (
        f"{CLIENTS} idle clients hold {held / CLIENTS / 1e6:.2f} MB of Arrow memory each "
        f"(at most {HELD_PER_CLIENT / 1e6:.2f} MB expected; {busiest / CLIENTS / 1e6:.2f} MB "
        "while they were reading)"
    )


def open_segments() -> int:
    """Parquet files this process has open."""
    fds = Path("/proc/self/fd")
    return sum(os.readlink(fd).endswith(".parquet") for fd in fds.iterdir() if fd.is_symlink())


def test_an_idle_clients_reader_closes_its_segment_and_reads_on_where_it_stopped(
    big_row_group: ArchiveLayout,
) -> None:
    """The client stops reading in the middle of the row group: its reader closes the file
    (parked), and when it reads again it gets every command once, in seq order."""
    server = DiskSyncServer(replayed(big_row_group), slow_client_timeout=10 * PATIENCE_S)

    async def main() -> tuple[int, list[int]]:
        port = await server.start()
        try:
            url = f"ws://127.0.0.1:{port}/?speed=max"
            async with connect(url, max_queue=1, compression=None) as ws:
                await ws.recv()  # connected
                seqs = [json.loads(await ws.recv())["seq"]]
                deadline = time.monotonic() + PATIENCE_S
                while open_segments() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                still_open = open_segments()
                seqs += [json.loads(await ws.recv())["seq"] for _ in range(ROWS - 1)]
            return still_open, seqs
        finally:
            async with asyncio.timeout(PATIENCE_S):
                await server.close()

    still_open, seqs = asyncio.run(main())
    assert still_open == 0
    assert seqs == list(range(ROWS))
