"""Benchmark: how fast ``replica record`` keeps up with the feed, and how small its archive is.

Throughput is reported as a ratio against a bare ``websockets`` client that only receives and
counts frames, measured in the same run on the same frames, because these machines are shared
and noisy: an absolute msgs/s threshold would flap with the neighbours, while the ratio says how
much the recorder's own work (parsing, spooling, fsync, Parquet) costs on top of the WebSocket
stack it cannot avoid. Targets: recorder/bare >= 0.7 and archive/zstd-3-of-payloads <= 1.15.

The recorder is also run on two endpoints serving the same N frames at once (two server
processes): every command arrives twice, is spooled twice and kept as two arrivals, and is
archived once. Its msgs/s (N commands archived over the slower server's time) is compared with
the one-endpoint recorder's in the same run: target two/one >= 0.8. That pair runs on bulk
servers (``bulk_feed_process``: the frames framed beforehand and written a MiB at a time), which
spend about a tenth of the CPU a frame-by-frame websockets server does: the real endpoints run on
the vendor's machines, while here two frame-by-frame servers would take a core of the two from
the recorder (10 µs a frame each, half the recorder's own cost), which alone caps the ratio
below 0.8 however little the second connection costs. The same pair on the frame-by-frame
server is reported beside it. The recorder's CPU time per command (user + system, its threads
included) is reported for both endpoint counts too: the CPU ratio says what the recorder's own
work costs whatever the neighbours do. The arrivals table's size per delivery is reported too.

Memory: a paced server sends ``--memory-rate`` msgs/s (30,000) for ``--memory-seconds`` (40;
long enough for two 500,000-command segments, with ``ts_ms`` in one hour so that rows, not the
hour, seal them), building each frame from a pool of realistic payloads; the peak RSS (VmHWM,
read from ``/proc`` until the process exits) of ``replica record`` is compared with the bare
client's on the same feed. Target: the recorder <= 200 MB.

Each measured client gets a fresh feed server in its own process (so it does not share the
client's GIL) that sends the ``connected`` frame and then N realistic pre-encoded frames from
``fixtures.make_feed`` as fast as the client reads them, then a ping. msgs/s is N divided by the
server's time from the first frame to the pong: the pong proves the client has read every frame
(the time until the last send completed would flatter a slow client, since loopback socket
buffers hold tens of MB). Then the server closes with 1000 and only greets any reconnection.
The bare client and the real ``replica record`` CLI alternate three times each; the best run of
each counts.

    python benchmarks/record.py [--commands N | --quick] [--json FILE]

Targets are informational: the exit status is 0 unless a run itself fails (for instance the
recorder did not append exactly N commands).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.schemas.frames import connected_frame  # noqa: E402

from benchmarks.feedprocess import (  # noqa: E402
    TIMEOUT_S,
    bulk_feed_process,
    expect,
    feed_process,
    spawn,
)
from benchmarks.measures import verdict, write_json  # noqa: E402
from fixtures.make_feed import feed_frames  # noqa: E402

RUNS = 3
MEMORY_TARGET_MB = 200
THROUGHPUT_TARGET = 0.7
TWO_ENDPOINTS_TARGET = 0.8
SIZE_TARGET = 1.15


# ---- the feed server (runs in a child process) ---------------------------------------------


def start_feed_server(frames_path: Path, bulk: bool = False):
    """A fresh server process (a bulk one if ``bulk``); returns (process, pipe end, port)."""
    if bulk:
        process, pipe = spawn(bulk_feed_process, str(frames_path), False)
    else:
        process, pipe = spawn(feed_process, str(frames_path), None, False)
    return process, pipe, expect(pipe, "port")


def stop_feed_server(process) -> None:
    process.join(30)
    if process.exitcode != 0:
        process.kill()
        raise RuntimeError(f"feed server exited with {process.exitcode}")


# ---- the two measured clients ---------------------------------------------------------------


async def _count_frames(port: int) -> int:
    async with connect(f"ws://127.0.0.1:{port}", max_size=2**30) as ws:
        await ws.recv()  # the connected frame
        count = 0
        async for _ in ws:
            count += 1
        return count


def measure_bare_client(frames_path: Path, n: int) -> float:
    """msgs/s of a client that only receives and counts."""
    process, pipe, port = start_feed_server(frames_path)
    count = asyncio.run(_count_frames(port))
    read_s = expect(pipe, "read")
    stop_feed_server(process)
    if count != n:
        raise RuntimeError(f"the bare client counted {count} of {n} frames")
    return n / read_s


def measure_recorder(
    frames_path: Path, n: int, archive: Path, endpoints: int = 1, bulk: bool = False
) -> tuple[float, float]:
    """msgs/s of the real ``replica record`` CLI on ``endpoints`` servers of the same frames
    (bulk ones if ``bulk``), and its CPU time per command in µs; fails unless it appended
    exactly n."""
    servers = [start_feed_server(frames_path, bulk) for _ in range(endpoints)]
    urls = [f"ws://127.0.0.1:{port}" for _, _, port in servers]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    recorder = subprocess.Popen(
        [sys.executable, "-m", "replica", "record", *urls, archive, "--status-seconds", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_s = max(expect(pipe, "read") for _, pipe, _ in servers)
        recorder.send_signal(signal.SIGTERM)
        out, err = recorder.communicate(timeout=TIMEOUT_S)
    finally:
        if recorder.poll() is None:
            recorder.kill()
    # The servers are reaped below: so far the recorder is the only child reaped since ``before``.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = sum(getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime"))
    for process, _, _ in servers:
        stop_feed_server(process)
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    if recorder.returncode != 0 or summary.get("appended") != n:
        raise RuntimeError(
            f"recorder exited {recorder.returncode}, appended {summary.get('appended')} of {n}\n"
            f"stdout: {out}\nstderr: {err}"
        )
    return n / read_s, cpu_s / n * 1e6


# ---- memory at a paced rate ----------------------------------------------------------------


def serve_paced(pool_path: str, rate: int, seconds: float, report) -> None:
    """Child process: send ``rate`` frames a second for ``seconds`` to one client, each built
    from a pool of payloads with the next seq and a ``ts_ms`` advancing at the feed's rate."""
    pool = [json.loads(line)["raw_hex"] for line in Path(pool_path).read_text().splitlines()]
    asyncio.run(_serve_paced(pool, rate, seconds, report))


async def _serve_paced(pool: list[str], rate: int, seconds: float, report) -> None:
    finished = asyncio.Event()
    start_ms = 1_795_219_200_000  # an hour's start: the run stays within the hour

    async def handle(ws: ServerConnection) -> None:
        await ws.send(connected_frame("disk-sync", time.time_ns() // 10**6))
        if finished.is_set():
            await ws.wait_closed()
            return
        total, sent, start = int(rate * seconds), 0, time.perf_counter()
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            for i in range(sent, due):
                ts = start_ms + i * 1000 // rate
                await ws.send(
                    f'{{"type":"replica_cmd","seq":{i + 1},"raw_hex":"{pool[i % len(pool)]}",'
                    f'"ts_ms":{ts},"ingest_ts_us":{ts * 1000 + 300},'
                    f'"publish_ts_us":{ts * 1000 + 320}}}',
                    text=True,
                )
            sent = due
            await asyncio.sleep(0.005)
        await (await ws.ping())
        report.send(("read", (time.perf_counter() - start, sent)))
        finished.set()
        await ws.close(1000)

    async with serve(handle, "127.0.0.1", 0, compression=None, max_size=None) as server:
        report.send(("port", server.sockets[0].getsockname()[1]))
        await finished.wait()
        await asyncio.sleep(0.5)


def peak_rss_mb(command: list[str], pool_path: Path, rate: int, seconds: float, stop: bool):
    """(peak RSS in MB, msgs/s served) of ``command``, ``{url}`` in it replaced by a paced
    server's; the command is sent SIGTERM once the server has sent everything if ``stop``."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(
        target=serve_paced, args=(str(pool_path), rate, seconds, theirs), daemon=True
    )
    server.start()
    theirs.close()
    url = f"ws://127.0.0.1:{expect(ours, 'port')}"
    process = subprocess.Popen(
        [part.replace("{url}", url) for part in command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0
    try:
        while not ours.poll(0.05):
            peak = max(peak, vm_hwm(process.pid))
        read_s, sent = expect(ours, "read")
        if stop:
            process.send_signal(signal.SIGTERM)
        while process.poll() is None:
            peak = max(peak, vm_hwm(process.pid))
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
    stop_feed_server(server)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} exited {process.returncode}")
    return peak / 2**20, sent / read_s


def vm_hwm(pid: int) -> int:
    """A process's peak RSS so far, in bytes (0 once it is gone). Not ru_maxrss, which carries
    over the parent's peak across fork and exec."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(status.split("VmHWM:")[1].split()[0]) * 1024 if "VmHWM:" in status else 0


_BARE_CLIENT = (
    "import asyncio, sys\n"
    "from websockets.asyncio.client import connect\n"
    "async def main():\n"
    "    async with connect(sys.argv[1], max_size=2**30) as ws:\n"
    "        async for _ in ws: pass\n"
    "asyncio.run(main())\n"
)


def measure_memory(pool_path: Path, rate: int, seconds: float, archive: Path) -> tuple:
    """(recorder's peak MB, bare client's peak MB, the rate the server achieved)."""
    bare, _ = peak_rss_mb(
        [sys.executable, "-c", _BARE_CLIENT, "{url}"], pool_path, rate, seconds, stop=False
    )
    record = [sys.executable, "-m", "replica", "record", "{url}", str(archive)]
    recorder, achieved = peak_rss_mb(
        [*record, "--status-seconds", "3600"], pool_path, rate, seconds, stop=True
    )
    return recorder, bare, achieved


# ---- sizes ----------------------------------------------------------------------------------


def archive_raw_bytes(archive: Path, table: str = "raw") -> tuple[int, int]:
    """(bytes of a table's Parquet files, number of files): the raw segments by default."""
    files = list((archive / table).rglob("*.parquet"))
    return sum(f.stat().st_size for f in files), len(files)


def zstd3_payload_bytes(frames: list[str]) -> int:
    """zstd level 3 of all payloads concatenated: what a plain compressed dump would cost."""
    payloads = b"".join(bytes.fromhex(json.loads(f)["raw_hex"]) for f in frames)
    return len(zstandard.ZstdCompressor(level=3).compress(payloads))


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--commands", type=int, default=200_000, metavar="N")
    parser.add_argument(
        "--quick", action="store_true", help="N = 20,000, memory for 4 s (smoke test)"
    )
    parser.add_argument("--memory-rate", type=int, default=30_000, metavar="MSGS")
    parser.add_argument("--memory-seconds", type=float, default=40.0, metavar="S")
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the final measures here as JSON"
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else args.commands
    began = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="replica-bench-") as tmp:
        frames = [json.dumps(f, separators=(",", ":")) for f in feed_frames(n)]
        frames_path = Path(tmp) / "frames.jsonl"
        frames_path.write_text("\n".join(frames) + "\n", encoding="utf-8")
        json_bytes = sum(len(f) for f in frames)
        zstd3 = zstd3_payload_bytes(frames)
        print(f"{n:,} commands, built in {time.perf_counter() - began:.1f} s")

        bare, recorded, two, one_bulk, two_bulk = [], [], [], [], []
        for run in range(1, RUNS + 1):
            bare.append(measure_bare_client(frames_path, n))
            print(f"run {run} bare     {bare[-1]:>9,.0f} msgs/s")
            archive = Path(tmp) / f"archive-{run}"
            rate, _ = measure_recorder(frames_path, n, archive)
            recorded.append((rate, *archive_raw_bytes(archive)))
            print(f"run {run} recorder {recorded[-1][0]:>9,.0f} msgs/s")
            archive = Path(tmp) / f"archive-two-{run}"
            two.append(measure_recorder(frames_path, n, archive, 2)[0])
            print(f"run {run} recorder on 2 endpoints {two[-1]:>9,.0f} msgs/s")
            archive = Path(tmp) / f"archive-bulk-{run}"
            one_bulk.append(measure_recorder(frames_path, n, archive, 1, bulk=True))
            print(f"run {run} recorder, bulk server {one_bulk[-1][0]:>9,.0f} msgs/s")
            archive = Path(tmp) / f"archive-bulk-two-{run}"
            rate, cpu = measure_recorder(frames_path, n, archive, 2, bulk=True)
            two_bulk.append((rate, cpu, archive_raw_bytes(archive, "arrivals")))
            print(f"run {run} recorder on 2 bulk endpoints {rate:>9,.0f} msgs/s")
        seconds = 4.0 if args.quick else args.memory_seconds
        pool_path = Path(tmp) / "pool.jsonl"
        pool_path.write_text("\n".join(frames[:4096]) + "\n", encoding="utf-8")
        peak, bare_peak, rate = measure_memory(
            pool_path, args.memory_rate, seconds, Path(tmp) / "archive-memory"
        )
        print(f"memory at {rate:,.0f} msgs/s for {seconds:.0f} s: recorder peak RSS {peak:.0f} MB")

    bare_best = max(bare)
    rec_best, archive_bytes, segments = max(recorded)
    throughput = rec_best / bare_best
    two_vs_one_frame_by_frame = max(two) / rec_best
    one_best = max(rate for rate, _ in one_bulk)
    two_best, _, (arrival_bytes, _) = max(two_bulk)
    two_vs_one = two_best / one_best
    cpu_one = min(cpu for _, cpu in one_bulk)
    cpu_two = min(cpu for _, cpu, _ in two_bulk)
    vs_zstd3 = archive_bytes / zstd3
    rows = [
        ("bare client msgs/s", f"{bare_best:,.0f}", ""),
        ("replica record msgs/s", f"{rec_best:,.0f}", ""),
        ("ratio recorder/bare", f"{throughput:.3f}", f">= {THROUGHPUT_TARGET}"),
        ("record 1 bulk server msgs/s", f"{one_best:,.0f}", ""),
        ("record 2 bulk servers msgs/s", f"{two_best:,.0f}", ""),
        ("ratio 2 endpoints/1", f"{two_vs_one:.3f}", f">= {TWO_ENDPOINTS_TARGET}, bulk servers"),
        ("... frame-by-frame servers", f"{two_vs_one_frame_by_frame:.3f}", "servers' CPU too"),
        ("recorder CPU us/command", f"{cpu_one:.1f}", "1 endpoint, least of the runs"),
        ("... on 2 endpoints", f"{cpu_two:.1f}", "2 endpoints"),
        ("ratio CPU 1 endpoint/2", f"{cpu_one / cpu_two:.3f}", "steadier than msgs/s"),
        ("arrivals B/delivery", f"{arrival_bytes / (2 * n):.1f}", ""),
        ("recorder peak RSS MB", f"{peak:.0f}", f"<= {MEMORY_TARGET_MB}, at {rate:,.0f} msgs/s"),
        ("bare client peak RSS MB", f"{bare_peak:.0f}", ""),
        ("archive raw/ B/command", f"{archive_bytes / n:.1f}", f"{segments} segment files"),
        ("JSON frames B/command", f"{json_bytes / n:.1f}", ""),
        ("zstd-3 payloads B/command", f"{zstd3 / n:.1f}", ""),
        ("ratio archive/zstd-3", f"{vs_zstd3:.3f}", f"<= {SIZE_TARGET}"),
        ("ratio archive/JSON", f"{archive_bytes / json_bytes:.3f}", ""),
    ]
    print()
    for name, value, note in rows:
        print(f"{name:<28}{value:>12}   {note}".rstrip())
    print(f"{verdict(throughput >= THROUGHPUT_TARGET)} throughput recorder/bare {throughput:.3f}")
    print(f"{verdict(vs_zstd3 <= SIZE_TARGET)} size archive/zstd-3 {vs_zstd3:.3f}")
    print(
        f"{verdict(two_vs_one >= TWO_ENDPOINTS_TARGET)} throughput 2 endpoints/1 {two_vs_one:.3f}"
    )
    print(f"{verdict(peak <= MEMORY_TARGET_MB)} recorder peak RSS {peak:.0f} MB")
    print(f"total {time.perf_counter() - began:.1f} s")
    if args.json:
        measures = [
            ("throughput recorder/bare", throughput, ">=", THROUGHPUT_TARGET, ""),
            ("size archive/zstd-3", vs_zstd3, "<=", SIZE_TARGET, ""),
            ("throughput 2 endpoints/1", two_vs_one, ">=", TWO_ENDPOINTS_TARGET, ""),
            ("recorder peak RSS", peak, "<=", MEMORY_TARGET_MB, "MB"),
        ]
        write_json(args.json, "record", measures)


if __name__ == "__main__":
    main()
