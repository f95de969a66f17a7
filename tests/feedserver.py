"""A loopback Disk-Sync server whose connections follow scripts, for tests.

It runs on its own thread and event loop, so the code under test can be an in-process
``Recorder`` or a ``replica record`` subprocess alike. Each accepted connection plays the next
script (a list of steps); when the scripts run out, a connection is greeted and held open.
The server keeps what it saw (request paths and headers, connection times) for assertions.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

BASE_TS_MS = 1_795_132_800_000  # 2026-11-20T00:00:00Z


def payload(seq: int) -> bytes:
    return f"payload-{seq}".encode()


def frame(seq: int, *, raw: bytes | None = None, ts_ms: int | None = None) -> str:
    ts_ms = BASE_TS_MS + seq * 10 if ts_ms is None else ts_ms
    return json.dumps(
        {
            "type": "replica_cmd",
            "seq": seq,
            "raw_hex": (payload(seq) if raw is None else raw).hex(),
            "ts_ms": ts_ms,
            "ingest_ts_us": ts_ms * 1000 + 300,
            "publish_ts_us": ts_ms * 1000 + 320,
        }
    )


@dataclass(frozen=True)
class Send:
    """Send frames as they are: texts, or bytes for binary frames."""

    frames: tuple[str | bytes, ...]

    @classmethod
    def cmds(cls, first: int, last: int) -> Send:
        return cls(tuple(frame(seq) for seq in range(first, last + 1)))


@dataclass(frozen=True)
class Close:
    code: int


@dataclass(frozen=True)
class Drop:
    """Abort the TCP connection: no close frame."""


@dataclass(frozen=True)
class Reject:
    """Answer the upgrade with an HTTP status (must be a script's only step)."""

    status: int


@dataclass(frozen=True)
class Redirect:
    """Answer the upgrade with HTTP 302 to ``location`` (must be a script's only step)."""

    location: str


@dataclass(frozen=True)
class Live:
    """Stream like the live feed: seq advances with wall time at ``rate``/s from when the
    server started, whether or not anyone is connected, so downtime becomes a gap."""

    rate: float


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Signal:
    """Set ``event``: another server's script can wait for this point (``WaitFor``)."""

    event: threading.Event


@dataclass(frozen=True)
class WaitFor:
    """Go on only once ``event`` is set (bounded by PATIENCE_S), e.g. by another server."""

    event: threading.Event


@dataclass(frozen=True)
class Freeze:
    """Stop reading from the socket and never answer again: a peer that silently died."""


Step = Send | Close | Drop | Reject | Redirect | Live | Pause | Freeze | Signal | WaitFor


@dataclass
class Seen:
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    connected_at: list[float] = field(default_factory=list)
    ended_at: list[float] = field(default_factory=list)


class ScriptedFeed:
    def __init__(
        self,
        *scripts: list[Step],
        api_key: str | None = None,
        tls: ssl.SSLContext | None = None,
        compression: str | None = "deflate",
    ) -> None:
        self._scripts = list(scripts)
        self._compression = compression
        self._api_key = api_key
        self._tls = tls
        self.seen = Seen()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._started = time.monotonic()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'wss' if self._tls else 'ws'}://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedFeed:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info) -> None:
        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def live_seq(self, rate: float) -> int:
        return int((time.monotonic() - self._started) * rate)

    async def _serve(self):
        return await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._upgrade,
            close_timeout=1,
            ssl=self._tls,
            compression=self._compression,
        )

    def _next_script(self) -> list[Step]:
        return self._scripts.pop(0) if self._scripts else []

    def _upgrade(self, connection: ServerConnection, request):
        self.seen.paths.append(request.path)
        self.seen.headers.append(dict(request.headers.raw_items()))
        first = self._scripts[0][0] if self._scripts and self._scripts[0] else None
        if isinstance(first, Reject | Redirect):
            self._next_script()
            self.seen.ended_at.append(time.monotonic())
            if isinstance(first, Reject):
                return connection.respond(HTTPStatus(first.status), "rejected by script\n")
            response = connection.respond(HTTPStatus.FOUND, "moved\n")
            response.headers["Location"] = first.location
            return response
        key = self._api_key
        if (
            key is None
            or request.headers.get("x-api-key") == key
            or f"api_key={key}" in request.path
        ):
            return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "bad key\n")

    async def _handle(self, ws: ServerConnection) -> None:
        # A scripted ending is stamped before the server starts it: the client may begin its
        # backoff while the server still waits out the closing handshake.
        self.seen.connected_at.append(time.monotonic())
        ending_at = None
        try:
            await ws.send(json.dumps({"type": "connected", "feed": "disk-sync", "ts_ms": 1}))
            for step in self._next_script():
                if isinstance(step, Send):
                    for text in step.frames:
                        await ws.send(text)
                elif isinstance(step, Close):
                    ending_at = time.monotonic()
                    await ws.close(step.code, "scripted close")
                    return
                elif isinstance(step, Drop):
                    ending_at = time.monotonic()
                    ws.transport.abort()
                    return
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Signal):
                    step.event.set()
                elif isinstance(step, WaitFor):
                    await asyncio.to_thread(step.event.wait, 60)
                elif isinstance(step, Freeze):
                    ws.transport.pause_reading()
                    await ws.wait_closed()
                    return
                elif isinstance(step, Live):
                    await self._stream_live(ws, step.rate)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            self.seen.ended_at.append(ending_at or time.monotonic())

    async def _stream_live(self, ws: ServerConnection, rate: float) -> None:
        seq = self.live_seq(rate)
        while True:
            now = self.live_seq(rate)
            while seq <= now:
                await ws.send(frame(seq))
                seq += 1
            await asyncio.sleep(0.005)
