"""Many clients off one live source: ``replica serve --follow``.

A ``LiveHub`` takes each new command once (``publish``) and hands it to every subscribed client's
buffer without waiting for any of them. The buffers share the commands, so together they hold
no more than the fullest one, and each is bounded by bytes (``CLIENT_BUFFER_BYTES`` of frames
and per-command overhead) rather than by commands, so that large commands cannot make it
hundreds of megabytes: a client whose buffer is full is marked too slow and closed with 1013,
and the others never notice. The archive follower (``follow_archive``) publishes for
``serve --follow``; ``record --serve`` publishes from the recorder in-process
(``replica.relay``), the clients' side unchanged.

A client with ``from_seq`` subscribes first, then reads the archive from ``from_seq``: anything
published before it subscribed was archived before that read listed the segments, anything
published after is in its buffer, and from the buffer it skips seqs it already sent. So the
seam between archive and live has no gap and no duplicate. If its buffer fills during that
catch-up, it is emptied and another pass reads on from the last seq sent.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import weakref
from bisect import bisect_right
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from replica.replay.follow import Follow, Position, live_edge
from replica.replay.metrics import ServeMetrics
from replica.replay.query import parse_query
from replica.replay.records import ReplayRecord
from replica.replay.resumable import ParkWhenIdle
from replica.replay.selection import Selection
from replica.replay.server import (
    CLIENT_BATCH_BYTES,
    FrameSource,
    Sink,
    TooSlow,
    WireFrames,
    wire_frames,
)
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import UsageError
from replica.schemas.frames import command_frame, command_frames
from replica.schemas.metrics import LatencyCounts
from websockets.http11 import Request

# Live commands held for one client before it is too slow: tens of thousands of the feed's
# typical few hundred bytes (seconds of a busy feed), and always the follower's largest burst
# (a batch of 8192 rows).
CLIENT_BUFFER_BYTES = 16 * 1024 * 1024
# What a held command costs beyond its frame: the record's tuple, its ints, the bytes' headers
# (its payload is about its frame's size again, counted in this allowance's stead).
RECORD_OVERHEAD_BYTES = 250


# Commands published together, as columns in the raw table's order: seq, ts_ms, ingest_ts_us,
# publish_ts_us, recv_ts_us, raw (the recorder's own columns, sliced: no per-command object).
CommandColumns = tuple[
    Sequence[int], Sequence[int], Sequence[int], Sequence[int], Sequence[int], Sequence[bytes]
]


class LiveBatch(NamedTuple):
    """Commands published together, in seq order, and their frames on the wire: built once
    and shared by every client that follows, so a client costs a batch, not each command, a
    few operations (the seam with the archive aside)."""

    seqs: Sequence[int]
    frames: WireFrames
    ends: list[int]  # where each command's frame ends in ``frames.data``
    text_ends: list[int]  # ... and its text, counted in text bytes
    received_us: Sequence[int]  # each command's recv_ts_us, for the relay latency
    held_bytes: int  # what a client is owed for it: its frames, and the allowance per command

    @classmethod
    def of(cls, columns: CommandColumns) -> LiveBatch:
        seqs, ts_ms, ingest_ts_us, publish_ts_us, received_us, raws = columns
        texts = command_frames(seqs, raws, ts_ms, ingest_ts_us, publish_ts_us)
        data, ends = wire_frames(texts)
        text_ends = list(itertools.accumulate(map(len, texts)))
        frames = WireFrames(data, len(texts), text_ends[-1])
        held = len(data) + RECORD_OVERHEAD_BYTES * len(texts)
        return cls(seqs, frames, ends, text_ends, received_us, held)

    def after(self, skip: int) -> WireFrames:
        """The frames of all but the first ``skip`` commands."""
        if not skip:
            return self.frames
        count = len(self.seqs) - skip
        text_bytes = self.text_ends[-1] - self.text_ends[skip - 1]
        return WireFrames(self.frames.data[self.ends[skip - 1] :], count, text_bytes)


class Subscriber:
    """One client's buffer of live commands, bounded by bytes.

    While its client is live and idle (its send task waits in ``take`` on an empty buffer), a
    batch offered to it is written straight to the client's socket (``sink``), in the call
    that publishes it; otherwise, or when the socket will not take it now, it is buffered for
    the send task. ``last`` is the last seq the client was sent, by either way."""

    def __init__(self, limit_bytes: int, sink: Sink | None = None) -> None:
        self._batches: deque[LiveBatch] = deque()
        self._limit_bytes = limit_bytes
        self._bytes = 0
        self._commands = 0
        self._ready = asyncio.Event()
        self._idle = False
        self._sink = sink
        self.last: int | None = None
        self.sent: Callable[[Sequence[int]], None] | None = None  # told each batch's recv times
        self.overflowed = False

    def offer(self, batch: LiveBatch) -> None:
        if self.overflowed:
            return
        if (
            self._idle
            and self._sink is not None
            and (self.last is None or batch.seqs[0] > self.last)
            and self._sink.write(batch.frames)
        ):
            self.last = batch.seqs[-1]
            if self.sent is not None:
                self.sent(batch.received_us)
            return
        if self._bytes + batch.held_bytes > self._limit_bytes:
            self.overflowed = True
            self._forget()  # it will be closed (or caught up from the archive again)
        else:
            self._batches.append(batch)
            self._bytes += batch.held_bytes
            self._commands += len(batch.seqs)
        self._ready.set()

    def restart(self) -> None:
        """Forgets the buffer, for a client about to catch up from the archive again."""
        self._forget()
        self.overflowed = False

    def _forget(self) -> None:
        self._batches.clear()
        self._bytes = 0
        self._commands = 0

    def __len__(self) -> int:
        """Commands held."""
        return self._commands

    async def take(self) -> list[LiveBatch]:
        """Everything buffered, once there is something: sent as one write, not one each."""
        while not self._batches:
            if self.overflowed:
                raise TooSlow
            self._ready.clear()
            self._idle = True
            try:
                await self._ready.wait()
            finally:
                self._idle = False
        batches = list(self._batches)
        self._forget()
        return batches


class LiveHub:
    def __init__(self, limit_bytes: int = CLIENT_BUFFER_BYTES) -> None:
        # Weak: a subscriber whose connection never started sending (a failed handshake) goes
        # with its unstarted generator; one that did leaves in its generator's ``finally``.
        self._subscribers: weakref.WeakSet[Subscriber] = weakref.WeakSet()
        self._limit_bytes = limit_bytes
        # Set by a composer that exposes it (``record --serve --metrics-port``): each live
        # command's time from its receipt (``recv_ts_us``) to its send, per client.
        self.latency: LatencyCounts | None = None

    def publish(self, columns: CommandColumns) -> None:
        """Hands new commands, in seq order, to every client; framed once for all of them."""
        if not self._subscribers or not columns[0]:
            return
        batch = LiveBatch.of(columns)
        for subscriber in list(self._subscribers):
            subscriber.offer(batch)

    def publish_record(self, record: ReplayRecord) -> None:
        self.publish(
            (
                [record.seq],
                [record.ts_ms],
                [record.ingest_ts_us],
                [record.publish_ts_us],
                [record.recv_ts_us],
                [record.raw],
            )
        )

    @property
    def clients(self) -> int:
        """Clients subscribed now (for metrics)."""
        return len(self._subscribers)

    def backlog(self) -> int:
        """Live commands waiting in all clients' buffers (for metrics)."""
        return sum(len(subscriber) for subscriber in list(self._subscribers))

    def subscribe(self, sink: Sink | None = None) -> Subscriber:
        """A new client's buffer; with its connection's ``sink``, written to directly while
        the client is idle."""
        subscriber = Subscriber(self._limit_bytes, sink)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)


async def follow_archive(layout: ArchiveLayout, hub: LiveHub) -> None:
    """Publishes each command the recorder seals from now on; runs until cancelled."""
    async for item in Follow(layout, after_seq=live_edge(layout)):
        if type(item) is ReplayRecord:
            hub.publish_record(item)


def follow_frames(
    layout: ArchiveLayout, hub: LiveHub, metrics: ServeMetrics | None = None
) -> FrameSource:
    """A source for ``DiskSyncServer``: live commands from the moment of connecting, or the
    archive from ``?from_seq=`` and then live; any other parameter is refused (400). Live
    commands come in batches (all a client's buffer holds), each written to it at once."""

    clients = itertools.count(1)

    def frames(request: Request, sink: Sink) -> AsyncGenerator[str | WireFrames, None]:
        query = parse_query(urlsplit(request.path).query, default_speed=None)
        selection = query.selection
        if query.speed is not None or selection != Selection(from_seq=selection.from_seq):
            raise UsageError("a followed archive takes only from_seq; it is sent as it grows")
        # Subscribed now, before the connected frame: live means from the moment of connecting.
        subscriber = hub.subscribe(sink)
        return _client_frames(
            layout, hub, subscriber, selection.from_seq, metrics, str(next(clients))
        )

    return frames


async def _client_frames(
    layout: ArchiveLayout,
    hub: LiveHub,
    subscriber: Subscriber,
    from_seq: int | None,
    metrics: ServeMetrics | None,
    client: str,
) -> AsyncGenerator[str | WireFrames, None]:
    if metrics is not None:
        metrics.watch_backlog(client, subscriber.__len__)
    subscriber.sent = _sent_counter(hub.latency, metrics)
    try:
        if from_seq is not None:
            subscriber.last = from_seq - 1
            while True:
                async for record in _archived_after(layout, subscriber.last):
                    subscriber.last = record.seq
                    yield command_frame(record)
                if not subscriber.overflowed:
                    break
                subscriber.restart()
        while True:
            frames: list[WireFrames] = []
            received: list[int] = []
            for batch in await subscriber.take():
                seqs, last = batch.seqs, subscriber.last
                if last is None or seqs[0] > last:
                    skip = 0
                elif seqs[-1] > last:  # the seam: this batch began before what was read
                    skip = bisect_right(seqs, last)
                else:
                    continue
                subscriber.last = seqs[-1]
                frames.append(batch.after(skip))
                received += batch.received_us[skip:] if skip else batch.received_us
            if frames:
                yield frames[0] if len(frames) == 1 else _joined(frames)
                # ... resumed once the frames are written to the client's socket
                if subscriber.sent is not None:
                    subscriber.sent(received)
    finally:
        hub.unsubscribe(subscriber)
        if metrics is not None:
            metrics.forget_backlog(client)


def _joined(frames: list[WireFrames]) -> WireFrames:
    data = b"".join(part.data for part in frames)
    count = sum(part.frame_count for part in frames)
    return WireFrames(data, count, sum(part.text_bytes for part in frames))


def _sent_counter(
    latency: LatencyCounts | None, metrics: ServeMetrics | None
) -> Callable[[Sequence[int]], None] | None:
    """What counts a batch once sent to a client, from its commands' recv_ts_us: the relay
    latency (``record --serve``) and the follow lag (``serve --follow``), when asked for."""
    if latency is None and metrics is None:
        return None

    def sent(received: Sequence[int]) -> None:
        if latency is not None:
            latency.observe(received, time.time_ns() // 1000)
        if metrics is not None:
            for received_us in received:
                metrics.follow_lag(received_us)

    return sent


async def _archived_after(layout: ArchiveLayout, last: int) -> AsyncIterator[ReplayRecord]:
    """One pass over the commands archived (sealed or spooled) after ``last``, read on a worker
    thread in batches of a client's byte budget; a reader left idle is parked (see
    ``replay.resumable``)."""
    loop = asyncio.get_running_loop()
    position = Position(layout, last, CLIENT_BATCH_BYTES)
    batches = position.batches()
    parking = ParkWhenIdle(position.park)
    try:
        while (batch := await loop.run_in_executor(None, next, batches, None)) is not None:
            parking.idle()
            for item in position.items(batch):
                if type(item) is ReplayRecord:  # a gap is the client's seq jump
                    yield item
            parking.busy()
    finally:
        parking.busy()
