"""A server that speaks the Disk-Sync protocol, so a client written for the live feed works
against it by changing the URL.

The upgrade checks the API key (``x-api-key`` header or ``api_key`` query) and answers 401 when
it is wrong, then asks the frame source for this request's frames; a source that refuses the
request (a ``UsageError``, such as a bad query parameter) gets it answered with 400 and the
reason. An accepted connection gets the ``connected`` frame, then its frames. Like the live
feed the server never ends a connection when its frames run out: it stays open and idle until
the client leaves.

If the archive fails under a replay (a file that no longer reads), the connection is closed
with 1011, as the feed does on an unexpected server error, and the reason is logged.

Like the live feed, it closes a client that cannot keep up with 1013 rather than skip frames:
a client is too slow when one send stays blocked for ``slow_client_timeout`` seconds because
the client has stopped reading (the socket buffers and websockets' write buffer are full). A
client that reads again finds every frame sent before the close, then the close frame. A frame
source with a bounded buffer of its own (``serve --follow``) raises ``TooSlow`` when it fills,
and gets the same 1013. ``metrics``, when given, counts clients, frames, bytes and 1013s.

A connection's memory is bounded by bytes, not by the archive's row groups: its replay reads
batches of about ``CLIENT_BATCH_BYTES`` of payloads (one in hand, one read ahead), its reader
lets go of the Parquet page it is in once idle (``replay.resumable``), and websockets buffers
at most its default write limit (32 KiB) above the socket's own buffers.

A connection's replay lives exactly as long as the connection: however far off its next
command is, a client that leaves (or a server that stops) ends it and frees its memory, files
and socket at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import itertools
import logging
import struct
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from http import HTTPStatus
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from replica.replay.metrics import ServeMetrics
from replica.replay.query import parse_query
from replica.replay.records import ReplayGap
from replica.replay.selection import Selection
from replica.replay.stream import Replay
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ReplicaError, UsageError
from replica.schemas.frames import command_frame, connected_frame
from replica.schemas.redact import RedactingLogger
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

log = logging.getLogger(__name__)


class WireFrames(NamedTuple):
    """Text frames as they go on the wire from this server (RFC 6455: final, unmasked, never
    compressed), end to end: built once, a live batch is one socket write to every client that
    follows."""

    data: bytes
    frame_count: int
    text_bytes: int  # their texts' bytes, for the metrics


# A source yields frames, or ``WireFrames`` written to the socket at once; a live source may
# also write them through its connection's ``Sink`` between its yields.
FrameSource = Callable[[Request, "Sink"], AsyncGenerator[str | WireFrames, None]]

_HEAD_16, _HEAD_64 = struct.Struct("!BBH"), struct.Struct("!BBQ")


@functools.lru_cache(maxsize=4096)  # bounded: a recorder runs for months
def _head(size: int) -> bytes:
    """A final, unmasked text frame's header for a text of ``size`` bytes."""
    if size < 126:
        return bytes((0x81, size))
    if size < 65536:
        return _HEAD_16.pack(0x81, 126, size)
    return _HEAD_64.pack(0x81, 127, size)


def wire_frames(texts: list[bytes]) -> tuple[bytes, list[int]]:
    """``texts`` (UTF-8) as text frames end to end, and the offset where each frame ends: one
    copy of the bytes, however many clients are sent them."""
    pieces: list[bytes] = [b""] * (2 * len(texts))
    pieces[::2] = map(_head, map(len, texts))
    pieces[1::2] = texts
    return b"".join(pieces), list(itertools.accumulate(map(len, pieces)))[1::2]


class TooSlow(Exception):
    """Raised by a frame source whose client fell too far behind its bounded buffer: the
    connection is closed with 1013, as for a send blocked too long."""


FEED_NAME = "disk-sync"  # in the ``connected`` frame, as the live feed's
SLOW_CLIENT_TIMEOUT_S = 5.0
CLIENT_BATCH_BYTES = 64 * 1024  # payloads per batch a client's replay reads
SHUTDOWN_GRACE_S = 1.0  # for clients to answer the 1001 close when the server stops
_CLOSE_TIMEOUT_S = 10.0  # for the close handshake of a client too slow to read the close frame


class DiskSyncServer:
    def __init__(
        self,
        source: FrameSource,
        *,
        api_key: str | None = None,
        slow_client_timeout: float = SLOW_CLIENT_TIMEOUT_S,
        metrics: ServeMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._source = source
        self._api_key = api_key
        self._slow_client_timeout = slow_client_timeout
        self._server: Server | None = None
        self._frames: weakref.WeakKeyDictionary[
            ServerConnection, AsyncGenerator[str | WireFrames, None]
        ] = weakref.WeakKeyDictionary()
        self._watches: weakref.WeakKeyDictionary[ServerConnection, _SendWatch] = (
            weakref.WeakKeyDictionary()
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the port (useful with port 0)."""
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._upgrade,
            compression=None,
            close_timeout=_CLOSE_TIMEOUT_S,
            logger=RedactingLogger(logging.getLogger("websockets.server"), self._api_key),
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        """Closes every connection with 1001 (going away), as the feed does when it restarts,
        and returns after at most about ``SHUTDOWN_GRACE_S``: a client that has not finished
        the closing handshake by then, or is still opening, is dropped. Nothing a client waits
        for (a command due in days) holds it up: a closed connection ends its replay at once."""
        if self._server is None:
            return
        self._server.close()
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE_S):
                await self._server.wait_closed()
            return
        except TimeoutError:
            pass
        for connection in self._server.all_connections:
            connection.transport.abort()
        for handler in self._server.handler_tasks:  # those still in the opening handshake
            handler.cancel()
        await self._server.wait_closed()

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._key_accepted(request):
            log.info("%s: refused (401): invalid or missing API key", _peer(connection))
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid or missing API key\n")
        try:
            watch = self._watches[connection] = _SendWatch()
            self._frames[connection] = self._source(request, Sink(connection, watch, self._metrics))
        except UsageError as exc:
            log.info("%s: refused (400): %s", _peer(connection), exc)
            return connection.respond(HTTPStatus.BAD_REQUEST, f"{exc}\n")
        return None

    def _key_accepted(self, request: Request) -> bool:
        if self._api_key is None:
            return True
        given = request.headers.get("x-api-key")
        if given is None:
            given = next(iter(parse_qs(urlsplit(request.path).query).get("api_key", [])), None)
        return given is not None and hmac.compare_digest(given.encode(), self._api_key.encode())

    async def _handle(self, connection: ServerConnection) -> None:
        """Sends on its own task and ends when the connection does: a paced replay waiting for
        a command hours away is cancelled the moment its client leaves, releasing its batch,
        files and socket, rather than when that command comes due."""
        peer = _peer(connection)
        if self._metrics is not None:
            self._metrics.clients.inc()
        watch = self._watches.pop(connection)
        watchdog = asyncio.create_task(self._close_if_stalled(connection, peer, watch))
        sender = asyncio.create_task(self._send(connection, peer, watch))
        try:
            await connection.wait_closed()
        finally:
            watchdog.cancel()
            sender.cancel()
            await asyncio.wait([sender])  # its replay closes before the handler returns
            if self._metrics is not None:
                self._metrics.clients.dec()
            log.info("%s: connection ended after %d frames", peer, watch.sent)

    async def _send(self, connection: ServerConnection, peer: str, watch: _SendWatch) -> None:
        try:
            async with contextlib.aclosing(self._frames.pop(connection)) as frames:
                # Its ts_ms is this server's wall clock, as on the live feed.
                sent = self._metrics.sent if self._metrics is not None else _not_counted
                sent_texts = self._metrics.sent_texts if self._metrics is not None else _not_counted
                connected = connected_frame(FEED_NAME, time.time_ns() // 10**6)
                await connection.send(connected)
                sent(connected)
                async for frame in frames:
                    watch.sending = True
                    if isinstance(frame, str):
                        await connection.send(frame)
                        watch.sent += 1
                        sent(frame)
                    else:
                        # A batch of wire frames in one socket write, within the context
                        # ``send`` uses (open-state check, flow control, close handling). This
                        # server never negotiates an extension (compression=None), so the bytes
                        # are what the protocol would have written, frame by frame.
                        async with connection.send_context():
                            connection.transport.write(frame.data)
                        watch.sent += frame.frame_count
                        sent_texts(frame.frame_count, frame.text_bytes)
                    watch.sending = False
        except ConnectionClosed:
            pass
        except TooSlow:
            log.warning("%s: client too slow: its buffer filled; closing with 1013", peer)
            await self._close_too_slow(connection)
        except Exception as exc:  # the archive failed under this replay: say so, like the feed
            if isinstance(exc, ReplicaError):
                log.error("%s: replay failed: %s", peer, exc)
            else:  # a bug: its traceback is for the log, and this connection alone ends
                log.exception("%s: replay failed", peer)
            await connection.close(CloseCode.INTERNAL_ERROR, "replay failed; see the server log")

    async def _close_if_stalled(
        self, connection: ServerConnection, peer: str, watch: _SendWatch
    ) -> None:
        """Closes with 1013 once the same send has been blocked for the slow-client timeout,
        checked every quarter of it: a send seen blocked at five ticks in a row has been blocked
        for more than four, so the client gets between 1 and 1.25 times the timeout."""
        tick = self._slow_client_timeout / 4
        stalled_ticks, last_sent = 0, -1
        while stalled_ticks < 5:
            await asyncio.sleep(tick)
            stalled = watch.sending and watch.sent == last_sent
            stalled_ticks = stalled_ticks + 1 if stalled else 0
            last_sent = watch.sent
        log.warning(
            "%s: client too slow: a send was blocked for %.1f s; closing with 1013",
            peer,
            self._slow_client_timeout,
        )
        await self._close_too_slow(connection)

    async def _close_too_slow(self, connection: ServerConnection) -> None:
        if self._metrics is not None:
            self._metrics.slow_closes.inc()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await connection.close(CloseCode.TRY_AGAIN_LATER, "client too slow; reconnect")
        except TimeoutError:
            connection.transport.abort()  # it never read again: drop it


def _not_counted(*_: object) -> None:
    pass


def _peer(connection: ServerConnection) -> str:
    host, port, *_ = connection.remote_address
    return f"{host}:{port}"


class Sink:
    """A connection's socket, for a live source to write a batch of ``WireFrames`` to from
    the very call that publishes it (``replay.live``), rather than through a wake-up of the
    connection's send task in a later turn of the loop. ``write`` writes only while that task
    is idle, the connection open and its write buffer under websockets' limit, and says
    whether it did: otherwise the source hands the batch to its send task as usual, which
    waits for the client (flow control, the slow-client watchdog, 1013)."""

    __slots__ = ("_connection", "_metrics", "_watch")

    def __init__(
        self, connection: ServerConnection, watch: _SendWatch, metrics: ServeMetrics | None
    ) -> None:
        self._connection = connection
        self._watch = watch
        self._metrics = metrics

    def write(self, frames: WireFrames) -> bool:
        connection, watch = self._connection, self._watch
        transport = connection.transport
        if (
            watch.sending
            or connection.paused
            or connection.protocol.state is not State.OPEN
            or transport.is_closing()
        ):
            return False
        transport.write(frames.data)
        watch.sent += frames.frame_count
        if self._metrics is not None:
            self._metrics.sent_texts(frames.frame_count, frames.text_bytes)
        return True


class _SendWatch:
    """What the send loop is doing, for the watchdog: costs two stores and an add per frame."""

    __slots__ = ("sending", "sent")

    def __init__(self) -> None:
        self.sending = False
        self.sent = 0


def archive_frames(layout: ArchiveLayout, default_speed: float | None) -> FrameSource:
    """A source that gives each connection its own replay of the archive, selected and paced
    by its query string (see ``replay.query``); ``default_speed`` when it names no speed."""

    def frames(request: Request, _sink: Sink) -> AsyncGenerator[str, None]:
        query = parse_query(urlsplit(request.path).query, default_speed)
        replay = Replay(layout, query.selection, speed=query.speed, batch_bytes=CLIENT_BATCH_BYTES)
        log.info("new replay: %s at speed %s", _describe(query.selection), query.speed or "max")
        return _replayed_frames(replay)

    return frames


async def _replayed_frames(replay: Replay) -> AsyncGenerator[str, None]:
    async with contextlib.aclosing(aiter(replay)) as items:
        async for item in items:
            if type(item) is not ReplayGap:  # the client sees a gap's seq jump, as on the feed
                yield command_frame(item)


def _describe(selection: Selection) -> str:
    parts = [
        f"{name} {value}"
        for name, value in (
            ("from_seq", selection.from_seq),
            ("to_seq", selection.to_seq),
            ("start_ms", selection.start_ms),
            ("end_ms", selection.end_ms),
        )
        if value is not None
    ]
    return ", ".join(parts) or "the whole archive"
