"""The feed server the recorder benchmarks time a client against, in its own process.

Its own process, so that it does not share the measured client's GIL: it sends the
``connected`` frame and then the pre-encoded frames of a file as text frames (as fast as the
client reads them, or at a rate), then a ping. The pong proves the client read every frame
(loopback socket buffers hold tens of MB, so the last send completing would flatter a slow
client): its time from the first frame goes back to the parent as ``("read", seconds)``. Then
it closes with 1000 and only greets a reconnection.

``bulk_feed_process`` serves the same frames at almost no CPU: framed once, before the port is
reported, then written to the socket a MiB at a time. A real feed runs on the vendor's machines,
not on the recorder's; on a 2-core machine a server sending frame by frame through websockets
spends about half what the recorder does per frame, so with two of them (a two-endpoint run) the
servers take a core from the recorder that a real deployment would not.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import struct
import time
from pathlib import Path

from replica.schemas.frames import connected_frame
from websockets.asyncio.server import ServerConnection, serve

TIMEOUT_S = 600.0
_BULK_WRITE = 2**20
_TEXT_FIN = 0x81  # FIN and the text opcode: a whole text message in one frame


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


def bulk_feed_process(frames_path: str, wait_for_go: bool, report) -> None:
    """``feed_process`` as fast as read, each frame's bytes on the wire built beforehand."""
    frames = Path(frames_path).read_bytes().splitlines()
    asyncio.run(_feed(frames, None, wait_for_go, report, wire=text_frames(frames)))


def text_frames(frames: list[bytes]) -> bytes:
    """``frames`` as a server puts them on the wire: unmasked, unfragmented text frames."""
    wire = bytearray()
    for frame in frames:
        size = len(frame)
        if size < 126:
            wire += struct.pack("!BB", _TEXT_FIN, size)
        elif size < 2**16:
            wire += struct.pack("!BBH", _TEXT_FIN, 126, size)
        else:
            wire += struct.pack("!BBQ", _TEXT_FIN, 127, size)
        wire += frame
    return bytes(wire)


async def _feed(
    frames: list[bytes], rate: float | None, wait_for_go: bool, report, wire: bytes | None = None
) -> None:
    finished = asyncio.Event()

    async def handle(ws: ServerConnection) -> None:
        await ws.send(connected_frame("disk-sync", time.time_ns() // 10**6))
        if finished.is_set():  # a recorder reconnecting after our 1000: nothing more to send
            await ws.wait_closed()
            return
        if wait_for_go:
            await asyncio.to_thread(report.recv)
        start = time.perf_counter()
        if wire is not None:
            # Straight to the socket, past websockets' framing: the frames are already framed.
            view = memoryview(wire)
            for at in range(0, len(wire), _BULK_WRITE):
                ws.transport.write(view[at : at + _BULK_WRITE])
                await ws.drain()
        elif rate is None:
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
