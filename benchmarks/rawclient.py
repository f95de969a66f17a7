"""The WebSocket upgrade of a benchmark's raw-socket clients: after it they only read bytes, so
that a client costs the measured server as little as a client can (and parse after the run)."""

from __future__ import annotations

import base64
import os
import socket


def upgrade(sock: socket.socket, port: int, path: str = "/") -> None:
    """Sends the upgrade request and reads the response, byte by byte so that nothing after its
    headers is taken; raises RuntimeError if it is not a 101."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    if not response.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {response.decode(errors='replace')}")
