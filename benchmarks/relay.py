"""Benchmark: what ``replica record --serve`` costs, measured in one run.

Latency: the feed sends realistic frames (``fixtures.make_feed``) at 10,000 commands/s to the
real ``replica record --serve`` CLI while 4 clients, each in its own process, read live. A
command's relay latency is the time a client received it minus its ``recv_ts_us`` in the
archive (when the recorder received it): the recorder's spool write, the hand-off to the
relay, the send, one loopback hop and the client's read. Target: p99 <= 2 ms.

Throughput: the feed sends N frames as fast as they are read to (a) a bare ``websockets``
client that only counts them, (b) ``replica record`` and (c) ``replica record --serve`` with 4
clients attached from before the first frame, reading everything live. msgs/s is N over the
feed's time from its first frame to the pong that proves the recorder read the last one (as
in benchmarks/record.py); each of (a), (b), (c) runs ``RUNS`` times, alternating, best of each
counted. The relay's cost is the drop of (c)/(a) against (b)/(a): target <= 10%. A client the
relay closed with 1013 (it fell 10,000 commands behind) is reported, not hidden.

Every process runs on this machine's cores (feed, recorder, 4 clients), so the figures are as
noisy as the machine is busy.

    python benchmarks/relay.py [--commands N] [--seconds S] [--quick] [--json FILE]

Targets are informational: the exit status is 0 unless a run itself fails (the recorder did
not append exactly N commands, or a client got a gap or a duplicate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import pyarrow.parquet as pq
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from benchmarks.feedprocess import TIMEOUT_S, expect, feed_process, spawn  # noqa: E402
from benchmarks.measures import verdict, write_json  # noqa: E402
from fixtures.make_feed import feed_frames  # noqa: E402

CLIENTS = 4
RATE = 10_000.0
RUNS = 3
LATENCY_TARGET_MS = 2.0
DROP_TARGET = 0.10


# ---- the feed server (its own process) ------------------------------------------------------


def client_process(url: str, last_seq: int, report) -> None:
    asyncio.run(_client(url, last_seq, report))


async def _client(url: str, last_seq: int, report) -> None:
    """Reads live until ``last_seq``; reports each seq and the wall time it arrived (us)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            ws = await connect(url, max_size=None, compression=None)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    seqs, times = array("q"), array("q")
    closed = None
    async with ws:
        await ws.recv()
        report.send(("ready", None))
        try:
            async for text in ws:
                now = time.time_ns() // 1000
                at = text.index('"seq":') + 6
                seq = int(text[at : text.index(",", at)])
                seqs.append(seq)
                times.append(now)
                if seq >= last_seq:
                    break
        except ConnectionClosed as exc:
            closed = exc.rcvd.code if exc.rcvd else -1
    report.send(("done", (seqs.tobytes(), times.tobytes(), closed)))


# ---- one measured run -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Run:
    """What one run measured: msgs/s, and per client its (seqs, arrival times, close code)."""

    def __init__(self, msgs_s: float, clients: list[tuple[array, array, int | None]]) -> None:
        self.msgs_s = msgs_s
        self.clients = clients


def measure_bare(frames_path: Path, n: int) -> float:
    feed, pipe = spawn(feed_process, str(frames_path), None, True)
    port = expect(pipe, "port")

    async def count() -> int:
        async with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as ws:
            await ws.recv()
            pipe.send("go")
            got = 0
            async for _ in ws:
                got += 1
            return got

    got = asyncio.run(count())
    read_s = expect(pipe, "read")
    feed.join(30)
    if got != n:
        raise RuntimeError(f"the bare client counted {got} of {n} frames")
    return n / read_s


def measure_recorder(
    frames_path: Path, n: int, last_seq: int, archive: Path, clients: int, rate: float | None
) -> Run:
    """The real CLI, with ``--serve`` and ``clients`` attached before the first frame when
    ``clients``; fails unless it appended exactly n and each client got every seq once."""
    feed, pipe = spawn(feed_process, str(frames_path), rate, True)
    port = expect(pipe, "port")
    serve_args = ["--serve", str(free_port())] if clients else []
    recorder = subprocess.Popen(
        [
            *(sys.executable, "-m", "replica", "record", f"ws://127.0.0.1:{port}", archive),
            *("--status-seconds", "3600", *serve_args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    readers = []
    try:
        if clients:
            url = f"ws://127.0.0.1:{serve_args[1]}"
            readers = [spawn(client_process, url, last_seq) for _ in range(clients)]
            for _, reader in readers:
                expect(reader, "ready")
        pipe.send("go")
        read_s = expect(pipe, "read")
        got = []
        for _, reader in readers:
            seqs, times, closed = expect(reader, "done")
            got.append((array("q", seqs), array("q", times), closed))
        recorder.send_signal(signal.SIGTERM)
        out, err = recorder.communicate(timeout=TIMEOUT_S)
    finally:
        if recorder.poll() is None:
            recorder.kill()
        for process, _ in readers:
            process.join(30)
        feed.join(30)
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    if recorder.returncode != 0 or summary.get("appended") != n:
        raise RuntimeError(
            f"recorder exited {recorder.returncode}, appended {summary.get('appended')} of {n}\n"
            f"stderr: {err}"
        )
    for seqs, _, closed in got:
        if closed is None and list(seqs) != sorted(set(seqs)):
            raise RuntimeError("a client got a seq twice or out of order")
    return Run(n / read_s, got)


def latencies_ms(archive: Path, run: Run) -> list[float]:
    """Each client's arrival time minus the command's recv_ts_us, in ms, sorted."""
    table = pq.read_table(
        sorted((archive / "raw").rglob("*.parquet")), columns=["seq", "recv_ts_us"]
    )
    received = dict(zip(table["seq"].to_pylist(), table["recv_ts_us"].to_pylist(), strict=True))
    return sorted(
        (arrived - received[seq]) / 1000
        for seqs, times, _ in run.clients
        for seq, arrived in zip(seqs, times, strict=True)
    )


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def closed_clients(run: Run) -> int:
    return sum(closed is not None for _, _, closed in run.clients)


# ---- main -----------------------------------------------------------------------------------


def write_frames(path: Path, n: int) -> int:
    """Writes n frames, one per line; returns the last seq."""
    frames = list(feed_frames(n))
    path.write_text(
        "\n".join(json.dumps(f, separators=(",", ":")) for f in frames) + "\n", encoding="utf-8"
    )
    last: int = frames[-1]["seq"]
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--commands", type=int, default=100_000, metavar="N")
    parser.add_argument("--seconds", type=float, default=10.0, help="of the 10,000/s latency run")
    parser.add_argument("--quick", action="store_true", help="N = 20,000, 2 s, one run each")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the measures as JSON")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.commands
    seconds = 2.0 if args.quick else args.seconds
    runs = 1 if args.quick else RUNS
    began = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="replica-bench-relay-") as tmp:
        paced_path, burst_path = Path(tmp) / "paced.jsonl", Path(tmp) / "burst.jsonl"
        paced_last = write_frames(paced_path, int(RATE * seconds))
        burst_last = write_frames(burst_path, n)
        print(f"{n:,} commands for throughput, {RATE * seconds:,.0f} at {RATE:,.0f}/s for latency")

        archive = Path(tmp) / "paced"
        paced = measure_recorder(
            paced_path, int(RATE * seconds), paced_last, archive, CLIENTS, RATE
        )
        lat = latencies_ms(archive, paced)
        p50, p99, worst = quantile(lat, 0.5), quantile(lat, 0.99), lat[-1]
        print(f"latency at {RATE:,.0f}/s, {CLIENTS} clients: p50 {p50:.2f} ms p99 {p99:.2f} ms")

        bare, plain, relayed = [], [], []
        for run in range(1, runs + 1):
            bare.append(measure_bare(burst_path, n))
            print(f"run {run} bare                {bare[-1]:>9,.0f} msgs/s")
            plain.append(
                measure_recorder(burst_path, n, burst_last, Path(tmp) / f"plain-{run}", 0, None)
            )
            print(f"run {run} recorder            {plain[-1].msgs_s:>9,.0f} msgs/s")
            relayed.append(
                measure_recorder(
                    burst_path, n, burst_last, Path(tmp) / f"relay-{run}", CLIENTS, None
                )
            )
            print(
                f"run {run} recorder, {CLIENTS} clients {relayed[-1].msgs_s:>9,.0f} msgs/s "
                f"({closed_clients(relayed[-1])} closed with 1013)"
            )

    bare_best = max(bare)
    plain_best = max(run.msgs_s for run in plain)
    best_relayed = max(relayed, key=lambda run: run.msgs_s)
    plain_ratio, relay_ratio = plain_best / bare_best, best_relayed.msgs_s / bare_best
    drop = 1 - relay_ratio / plain_ratio
    rows = [
        ("relay latency p50 ms", f"{p50:.2f}", ""),
        ("relay latency p99 ms", f"{p99:.2f}", f"<= {LATENCY_TARGET_MS}"),
        ("relay latency max ms", f"{worst:.2f}", ""),
        ("clients closed (latency run)", f"{closed_clients(paced)}", ""),
        ("bare client msgs/s", f"{bare_best:,.0f}", ""),
        ("recorder msgs/s", f"{plain_best:,.0f}", ""),
        (f"recorder + {CLIENTS} clients msgs/s", f"{best_relayed.msgs_s:,.0f}", ""),
        ("ratio recorder/bare", f"{plain_ratio:.3f}", ""),
        (f"ratio recorder+{CLIENTS}/bare", f"{relay_ratio:.3f}", ""),
        ("throughput drop", f"{drop:.3f}", f"<= {DROP_TARGET}"),
        ("clients closed (best run)", f"{closed_clients(best_relayed)}", ""),
    ]
    print()
    for name, value, note in rows:
        print(f"{name:<30}{value:>12}   {note}".rstrip())
    print(f"{verdict(p99 <= LATENCY_TARGET_MS)} relay latency p99 {p99:.2f} ms")
    print(f"{verdict(drop <= DROP_TARGET)} throughput drop with {CLIENTS} clients {drop:.3f}")
    print(f"total {time.perf_counter() - began:.1f} s")
    if args.json:
        measures = [
            ("relay latency p99", p99 * 1000, "<=", LATENCY_TARGET_MS * 1000, "us"),
            (f"throughput drop with {CLIENTS} clients", drop, "<=", DROP_TARGET, ""),
        ]
        write_json(args.json, "relay", measures)


if __name__ == "__main__":
    main()
