"""``replica serve`` as a subprocess, as a user runs it: its stderr goes to a file, read for
the URL it listens on and for what it logged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from tests.conftest import PATIENCE_S


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """The metrics page as name{labels} -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=PATIENCE_S) as page:
        text = page.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def wait_for_text(path: Path, pattern: str, process: subprocess.Popen) -> re.Match:
    deadline = time.monotonic() + PATIENCE_S
    while not (found := re.search(pattern, path.read_text())):
        assert process.poll() is None, f"exited {process.returncode}: {path.read_text()}"
        assert time.monotonic() < deadline, f"no {pattern!r} in {path.read_text()}"
        time.sleep(0.02)
    return found


class Served:
    """``replica serve ARCHIVE --port 0 ARGS``; as a context manager, killed if still running
    at the end."""

    def __init__(self, archive: Path, tmp_path: Path, *args: str, env: dict | None = None):
        self.log = tmp_path / "serve.log"
        with open(self.log, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "replica", "serve", archive, "--port", "0", *args],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, **(env or {})},
            )
        self.url = wait_for_text(self.log, r"ws://127\.0\.0\.1:\d+", self.process)[0]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(PATIENCE_S)

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:  # a test that failed midway leaves nothing running
            self.process.kill()
            self.process.wait()


@contextlib.asynccontextmanager
async def stalled_and_reader(url: str) -> AsyncIterator[tuple[ClientConnection, ClientConnection]]:
    """Two clients of ``url``, each past its greeting: one that reads nothing more through a
    4 KiB socket buffer (a client that stopped reading), and one that reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    async with (
        connect(url, sock=sock, max_queue=1, max_size=None) as stalled,
        connect(url, max_size=None) as reader,
    ):
        await stalled.recv()
        await reader.recv()
        yield stalled, reader


async def close_code(stalled: ClientConnection, log: Path) -> int:
    """The code the server closed ``stalled`` with, once ``log`` says it is closing it with
    1013 (-1 if it sent none); the frames still buffered for it are read through first."""
    async with asyncio.timeout(PATIENCE_S):
        while "closing with 1013" not in log.read_text():
            await asyncio.sleep(0.05)
    try:
        async with asyncio.timeout(PATIENCE_S):
            while True:
                await stalled.recv()
    except ConnectionClosedError as closed:
        return closed.rcvd.code if closed.rcvd else -1
