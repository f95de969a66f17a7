"""Benchmark: what each client connected to ``replica serve`` costs in memory.

--clients idle clients (16 by default) connect to a server, and its resident memory (VmRSS) is
read before they connect and while they are connected with every buffer full: the growth over
the number of clients is the cost of one. An idle client is a raw socket with a small receive
buffer that completes the upgrade and reads nothing more. Memory is read once the server's
socket send buffers have stopped growing (every client is idle-buffered: at speed max within a
second, paced at the archive's pace, seconds) and its idle readers have been parked and their
memory purged, before the server closes the clients as too slow (1013, 5 s after a send
blocks). Measured in the same run, on one archive:

  bare     a bare websockets server (its own process) sending the same frames, pre-encoded in
           memory, to each client: the floor (a connection and websockets' write buffer)
  replay   ``replica serve ARCHIVE``, each client replaying the whole archive at speed max
  paced    the same at ``speed=1``: idle clients waiting for their next command
  follow   ``replica serve ARCHIVE --follow``, each client from the archive's first seq
           (catching up from the archive; live commands are shared between clients, and each
           client's buffer of them is bounded by bytes by construction)

Per client is the growth from half of the clients to all of them, over the clients added,
measured once on a fresh server: a second round would find memory the first one freed still
held by the allocators, and would read low. Allocators make it noisy: expect runs to differ
by half a MB or more at 16 clients (per-client figures can come out below zero); 32 clients
halve that.

Target: each replica mode's per-client growth <= 2 MB. For information: its ratio to bare's.

    python benchmarks/serve_memory.py [--commands N] [--clients N] [--json FILE]

Targets are informational: the exit status is 0 unless a run itself fails.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.replay.resumable import PARK_AFTER_S  # noqa: E402
from replica.schemas.frames import command_frame  # noqa: E402

import replica  # noqa: E402
from benchmarks import replay as replay_bench  # noqa: E402
from benchmarks.measures import verdict, write_json  # noqa: E402
from benchmarks.rawclient import upgrade  # noqa: E402
from fixtures.make_feed import START_SEQ  # noqa: E402

TARGET_MB = 2.0
TIMEOUT_S = 120.0
STILL_POLLS = 4  # the send buffers unchanged this many polls 0.1 s apart: every client waits
# then for idle readers to be parked (``replay.resumable``) and jemalloc to purge what they
# freed (about a second: see ``replay.memory``)
SETTLE_S = PARK_AFTER_S + 1.2
MEASURE_S = 1.0  # then the peak over this long, before the 1013 at 5 s after a send blocks


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


class IdleClients:
    """Raw WebSocket clients with small receive buffers that read nothing after the upgrade."""

    def __init__(self, port: int, path: str, count: int) -> None:
        self.sockets = [self._open(port, path) for _ in range(count)]

    @staticmethod
    def _open(port: int, path: str) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(TIMEOUT_S)
        sock.connect(("127.0.0.1", port))
        upgrade(sock, port, path)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def bare_server(frames_path: str, report) -> None:
    """Child process: a bare websockets server sending the frames to each client."""
    import asyncio
    import contextlib

    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    frames = Path(frames_path).read_text().splitlines()

    async def main() -> None:
        async def handle(ws: ServerConnection) -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send('{"type":"connected"}')
                for frame in frames:
                    await ws.send(frame)

        async with serve(handle, "127.0.0.1", 0, compression=None) as server:
            report.send(server.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


class Server:
    """A server process under measurement: the bare one, or ``replica serve ARGS``."""

    def __init__(self, tmp: Path, frames_path: Path | None, *args: object) -> None:
        self.log = tmp / "serve.log"
        if frames_path is not None:
            ctx = multiprocessing.get_context("spawn")
            ours, theirs = ctx.Pipe()
            self.child = ctx.Process(target=bare_server, args=(str(frames_path), theirs))
            self.child.start()
            if not ours.poll(TIMEOUT_S):
                raise RuntimeError("the bare server did not start")
            self.port, self.pid = ours.recv(), self.child.pid
            return
        with open(self.log, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "replica", "serve", *map(str, args), "--port", "0"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + TIMEOUT_S
        while not (found := re.search(r"ws://127\.0\.0\.1:(\d+)", self.log.read_text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica serve did not start: {self.log.read_text()}")
            time.sleep(0.05)
        self.port, self.pid = int(found[1]), self.process.pid

    def stop(self) -> None:
        if hasattr(self, "child"):
            self.child.kill()
            self.child.join()
        else:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(TIMEOUT_S)


def unsent(port: int) -> int:
    """Bytes the server's sockets on ``port`` hold unsent (tx_queue in /proc/net/tcp)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            total += int(fields[4].split(":")[0], 16)
    return total


def wait_buffered(port: int) -> None:
    """Until the server's send buffers stop growing: its clients are idle-buffered. A paced
    replay fills them at the archive's pace, seconds rather than a moment."""
    deadline, last, still = time.monotonic() + TIMEOUT_S, -1, 0
    while still < STILL_POLLS:
        if time.monotonic() > deadline:
            raise RuntimeError("the server's send buffers never stopped growing")
        time.sleep(0.1)
        now = unsent(port)
        still = still + 1 if now == last and now > 0 else 0
        last = now


def peak_with(server: Server, path: str, clients: int) -> int:
    """The server's peak resident memory while ``clients`` idle clients are connected, once
    their buffers are full and an idle reader has let go of its segment."""
    idle = IdleClients(server.port, path, clients)
    try:
        wait_buffered(server.port)
        time.sleep(SETTLE_S)
        peak, end = 0, time.monotonic() + MEASURE_S
        while time.monotonic() < end:
            peak = max(peak, rss(server.pid))
            time.sleep(0.1)
        if "1013" in (server.log.read_text() if server.log.exists() else ""):
            raise RuntimeError("an idle client was closed with 1013 too soon: the measure is void")
    finally:
        idle.close()
    time.sleep(0.5)
    return peak


def per_client(server: Server, path: str, clients: int) -> float:
    """Bytes of resident memory each idle client adds: the growth from half of ``clients`` to
    all of them, over the clients added, so that what a server keeps once it has served a few
    at once (imports, its readers' thread pool, six threads) does not count."""
    few = max(1, clients // 2)
    base = peak_with(server, path, few)
    return (peak_with(server, path, clients) - base) / (clients - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--commands", type=int, default=200_000, metavar="N")
    parser.add_argument("--clients", type=int, default=16, metavar="N")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the measures here")
    args = parser.parse_args()
    if args.commands < 1000 or args.clients < 2:
        parser.error("need --commands >= 1000 and --clients >= 2")
    began = time.perf_counter()
    grown: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="replica-bench-serve-memory-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "archive"
        replay_bench.build_archive(root, args.commands)
        frames_path = tmp / "frames.jsonl"
        with open(frames_path, "w") as out:
            for record in replica.open(root).replay():
                out.write(command_frame(record) + "\n")
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        print(
            f"{args.commands:,} commands ({size / 1e6:.0f} MB on disk), {args.clients} idle "
            f"clients, built in {time.perf_counter() - began:.1f} s"
        )
        modes = {
            "bare": (frames_path, (), "/"),
            "replay": (None, (root,), "/?speed=max"),
            "paced": (None, (root,), "/?speed=1"),
            "follow": (None, (root, "--follow"), f"/?from_seq={START_SEQ}"),
        }
        for mode, (frames, server_args, path) in modes.items():
            run_dir = tmp / mode
            run_dir.mkdir()
            server = Server(run_dir, frames, *server_args)
            try:
                grown[mode] = per_client(server, path, args.clients)
            finally:
                server.stop()
            print(f"  {mode:<7} {grown[mode] / 1e6:7.2f} MB per client")
    measures = []
    for mode in ("replay", "paced", "follow"):
        mb = grown[mode] / 1e6
        print(f"{verdict(mb <= TARGET_MB)} serve {mode} per-client RSS {mb:.2f} MB")
        ratio = grown[mode] / max(grown["bare"], 1.0)
        print(f"info ratio {mode}/bare per-client RSS {ratio:.2f}")
        measures.append((f"serve {mode} per-client RSS", mb, "<=", TARGET_MB, "MB"))
    print(f"total {time.perf_counter() - began:.1f} s")
    if args.json:
        write_json(args.json, "serve_memory", measures)


if __name__ == "__main__":
    main()
