"""The feed server the recorder benchmarks time a client against, in its own process.

Its own process, so that it does not share the measured client's GIL: it sends the
``connected`` frame and then the pre-encoded frames of a file as text frames (as fast as the
client reads them, or at a rate), then a ping. The pong proves the client read every frame
(loopback socket buffers hold tens of MB, so the last send completing would flatter a slow
client): its time from the first frame goes back to the parent as ``("read", seconds)``. Then
it closes with 1000 and only greets a reconnection.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

from replica.schemas.frames import connected_frame
from websockets.asyncio.server import ServerConnection, serve

TIMEOUT_S = 600.0


def spawn(target, *args):
    """``target(*args, pipe)`` in a fresh process; returns (process, our end of the pipe)."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    theirs.close()
    return process, ours


def expect(pipe, kind: str):
    """The value of the next ``(kind, value)`` message on ``pipe``."""
    if not pipe.poll(TIMEOUT_S):
        raise RuntimeError(f"no {kind!r} within {TIMEOUT_S:.0f} s")
    got, value = pipe.recv()
    if got != kind:
        raise RuntimeError(f"got {got!r}, expected {kind!r}")
    return value


def feed_process(frames_path: str, rate: float | None, wait_for_go: bool, report) -> None:
    """Reports ``("port", port)``, serves the frames to one client (at ``rate``/s, or as fast
    as read; after a "go" from the parent if ``wait_for_go``), then reports the read time."""
    frames = Path(frames_path).read_bytes().splitlines()
    asyncio.run(_feed(frames, rate, wait_for_go, report))


async def _feed(frames: list[bytes], rate: float | None, wait_for_go: bool, report) -> None:
    finished = asyncio.Event()

    async def handle(ws: ServerConnection) -> None:
        await ws.send(connected_frame("disk-sync", time.time_ns() // 10**6))
        if finished.is_set():  # a recorder reconnecting after our 1000: nothing more to send
            await ws.wait_closed()
            return
        if wait_for_go:
            await asyncio.to_thread(report.recv)
        start = time.perf_counter()
        if rate is None:
            for frame in frames:
                await ws.send(frame, text=True)
        else:
            sent = 0
            while sent < len(frames):
                due = min(len(frames), int((time.perf_counter() - start) * rate) + 1)
                for frame in frames[sent:due]:
                    await ws.send(frame, text=True)
                sent = due
                await asyncio.sleep(0.0005)
        await (await ws.ping())  # the pong comes back once the client has read every frame
        report.send(("read", time.perf_counter() - start))
        finished.set()
        await ws.close(1000)

    async with serve(handle, "127.0.0.1", 0, compression=None, max_size=None) as server:
        report.send(("port", server.sockets[0].getsockname()[1]))
        await finished.wait()
        await asyncio.sleep(0.5)  # let the close handshake finish
