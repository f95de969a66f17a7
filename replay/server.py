"""A server that speaks the Disk-Sync protocol, so a client written for the live feed works
against it by changing the URL.

The upgrade checks the API key (``x-api-key`` header or ``api_key`` query) and answers 401 when
it is wrong; an accepted connection gets the ``connected`` frame, then whatever frames its
source yields. Like the live feed it never ends a connection on its own when the source is
exhausted: it stays open and idle until the client leaves.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

FrameSource = Callable[[Request], AsyncIterator[str]]


def connected_frame() -> str:
    return json.dumps({"type": "connected", "feed": "disk-sync", "ts_ms": time.time_ns() // 10**6})


class DiskSyncServer:
    def __init__(self, source: FrameSource, *, api_key: str | None = None) -> None:
        self._source = source
        self._api_key = api_key
        self._server: Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the port (useful with port 0)."""
        self._server = await serve(
            self._handle, host, port, process_request=self._check_key, compression=None
        )
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _check_key(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._api_key is None:
            return None
        given = request.headers.get("x-api-key")
        if given is None:
            given = next(iter(parse_qs(urlsplit(request.path).query).get("api_key", [])), None)
        if given is not None and hmac.compare_digest(given.encode(), self._api_key.encode()):
            return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid or missing API key\n")

    async def _handle(self, connection: ServerConnection) -> None:
        await connection.send(connected_frame())
        async for frame in self._source(connection.request):
            await connection.send(frame)
        await connection.wait_closed()
