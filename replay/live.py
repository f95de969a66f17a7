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
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import urlsplit

from replica.replay.follow import Follow, Position, live_edge
from replica.replay.metrics import ServeMetrics
from replica.replay.query import parse_query
from replica.replay.records import ReplayRecord
from replica.replay.resumable import ParkWhenIdle
from replica.replay.selection import Selection
from replica.replay.server import CLIENT_BATCH_BYTES, FrameSource, TooSlow, wire_frame
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import UsageError
from replica.schemas.frames import command_frame
from websockets.http11 import Request

# Live commands held for one client before it is too slow: tens of thousands of the feed's
# typical few hundred bytes (seconds of a busy feed), and always the follower's largest burst
# (a batch of 8192 rows).
CLIENT_BUFFER_BYTES = 16 * 1024 * 1024
# What a held command costs beyond its frame: the record's tuple, its ints, the bytes' headers
# (its payload is about its frame's size again, counted in this allowance's stead).
RECORD_OVERHEAD_BYTES = 250


# A live command and its ``wire_frame``, built once for every client that follows.
LiveItem = tuple[ReplayRecord, bytes]


def held_bytes(item: LiveItem) -> int:
    """What one client is owed for a command: its frame, the bytes still to send it."""
    return len(item[1]) + RECORD_OVERHEAD_BYTES


class Subscriber:
    """One client's buffer of live commands, bounded by bytes."""

    def __init__(self, limit_bytes: int) -> None:
        self._items: deque[LiveItem] = deque()
        self._limit_bytes = limit_bytes
        self._bytes = 0
        self._ready = asyncio.Event()
        self.overflowed = False

    def offer(self, items: list[LiveItem]) -> None:
        if self.overflowed:
            return
        size = sum(map(held_bytes, items))
        if self._bytes + size > self._limit_bytes:
            self.overflowed = True
            self._forget()  # it will be closed (or caught up from the archive again)
        else:
            self._items.extend(items)
            self._bytes += size
        self._ready.set()

    def restart(self) -> None:
        """Forgets the buffer, for a client about to catch up from the archive again."""
        self._forget()
        self.overflowed = False

    def _forget(self) -> None:
        self._items.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    async def take(self) -> list[LiveItem]:
        """Everything buffered, once there is something: sent as one write, not one each."""
        while not self._items:
            if self.overflowed:
                raise TooSlow
            self._ready.clear()
            await self._ready.wait()
        items = list(self._items)
        self._forget()
        return items


class LiveHub:
    def __init__(self, limit_bytes: int = CLIENT_BUFFER_BYTES) -> None:
        # Weak: a subscriber whose connection never started sending (a failed handshake) goes
        # with its unstarted generator; one that did leaves in its generator's ``finally``.
        self._subscribers: weakref.WeakSet[Subscriber] = weakref.WeakSet()
        self._limit_bytes = limit_bytes

    def publish(self, records: list[ReplayRecord]) -> None:
        """Hands new commands, in seq order, to every client; framed once for all of them."""
        if not self._subscribers:
            return
        items = [(record, wire_frame(command_frame(record))) for record in records]
        for subscriber in list(self._subscribers):
            subscriber.offer(items)

    @property
    def clients(self) -> int:
        """Clients subscribed now (for metrics)."""
        return len(self._subscribers)

    def backlog(self) -> int:
        """Live commands waiting in all clients' buffers (for metrics)."""
        return sum(len(subscriber) for subscriber in list(self._subscribers))

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(self._limit_bytes)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)


async def follow_archive(layout: ArchiveLayout, hub: LiveHub) -> None:
    """Publishes each command the recorder seals from now on; runs until cancelled."""
    async for item in Follow(layout, after_seq=live_edge(layout)):
        if type(item) is ReplayRecord:
            hub.publish([item])


def follow_frames(
    layout: ArchiveLayout, hub: LiveHub, metrics: ServeMetrics | None = None
) -> FrameSource:
    """A source for ``DiskSyncServer``: live commands from the moment of connecting, or the
    archive from ``?from_seq=`` and then live; any other parameter is refused (400). Live
    commands come in batches (all a client's buffer holds), each written to it at once."""

    clients = itertools.count(1)

    def frames(request: Request) -> AsyncGenerator[str | list[bytes], None]:
        query = parse_query(urlsplit(request.path).query, default_speed=None)
        selection = query.selection
        if query.speed is not None or selection != Selection(from_seq=selection.from_seq):
            raise UsageError("a followed archive takes only from_seq; it is sent as it grows")
        # Subscribed now, before the connected frame: live means from the moment of connecting.
        subscriber = hub.subscribe()
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
) -> AsyncGenerator[str | list[bytes], None]:
    if metrics is not None:
        metrics.watch_backlog(client, subscriber.__len__)
    try:
        last = None if from_seq is None else from_seq - 1
        if last is not None:
            while True:
                async for record in _archived_after(layout, last):
                    last = record.seq
                    yield command_frame(record)
                if not subscriber.overflowed:
                    break
                subscriber.restart()
        while True:
            batch = []
            for record, frame in await subscriber.take():
                if last is not None and record.seq <= last:
                    continue
                last = record.seq
                if metrics is not None:
                    metrics.follow_lag(record.recv_ts_us)
                batch.append(frame)
            if batch:
                yield batch
    finally:
        hub.unsubscribe(subscriber)
        if metrics is not None:
            metrics.forget_backlog(client)


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
