"""Benchmark: how ``replica decode --cluster`` scales from one Dask worker to two.

Two ``LocalCluster``s run side by side on loopback, one with one worker process and one with
two (one thread each), and decode the same archive in turn: the figure is the ratio of their
times, measured in the same run, since these machines are shared and noisy. Each worker is
warmed first (a small archive decoded, so imports and the Decoder are built), the decoded/
directory is removed before each timed run, and each measurement is taken three times,
interleaved; the best counts. Target 1-worker/2-worker >= 1.6: of the ideal 2, what the
scheduler, the client's bookkeeping and the segments' uneven sizes leave. On a machine with
fewer than two free cores it cannot be met, and says so.

The archive is protobuf commands written as the recorder seals them (``benchmarks/decode.py``'s
``build_archive``), in segments of an eighth of them, so that two workers have work to share.

    python benchmarks/cluster.py [--commands N] [--json FILE]

Targets are informational: the exit status is 0 unless a run itself fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import distributed  # noqa: E402
from replica.decoder.archive import decode_archive  # noqa: E402
from replica.schemas.decoded import DECODED_DIR  # noqa: E402

from benchmarks import decode as decode_bench  # noqa: E402
from benchmarks.measures import verdict, write_json  # noqa: E402
from fixtures.make_feed import protobuf_command  # noqa: E402

RUNS = 3
TARGET = 1.6
SEGMENTS = 8  # about: the recorder's hour boundaries add one or two


def start_cluster(workers: int) -> distributed.Client:
    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        worker_dashboard_address=None,
        # its HTTP server (health, metrics) runs even so: on a free port, not 8787
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=40,  # errors only: worker start-up chatter would bury the figures
    )
    client = distributed.Client(cluster, set_as_default=False)
    client.wait_for_workers(workers, timeout=120)
    return client


def timed_decode(archive: Path, client: distributed.Client, segments: int) -> float:
    shutil.rmtree(archive / DECODED_DIR, ignore_errors=True)
    began = time.perf_counter()
    summary = decode_archive(archive, cluster=client)
    seconds = time.perf_counter() - began
    if summary.decoded != segments or summary.failed:
        raise RuntimeError(f"decoded {summary.decoded} of {segments} segments: {summary.failed}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--commands", type=int, default=120_000, metavar="N", help="default 120,000"
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the final measures here as JSON"
    )
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)  # start-up and shut-down chatter
    if args.commands < SEGMENTS:
        parser.error(f"--commands must be at least {SEGMENTS}, was {args.commands}")
    with tempfile.TemporaryDirectory(prefix="replica-bench-cluster-") as tmp:
        archive, warm = Path(tmp) / "archive", Path(tmp) / "warm"
        began = time.perf_counter()
        segments = decode_bench.build_archive(
            archive,
            args.commands,
            11,
            lambda rng, ts, i: protobuf_command(rng, ts),
            segment_rows=args.commands // SEGMENTS,
        )
        warm_segments = decode_bench.build_archive(
            warm, 200, 12, lambda rng, ts, i: protobuf_command(rng, ts)
        )
        print(
            f"{args.commands:,} protobuf commands in {segments} segments, built in "
            f"{time.perf_counter() - began:.1f} s; {os.cpu_count()} cores here"
        )
        clients = {workers: start_cluster(workers) for workers in (1, 2)}
        try:
            for client in clients.values():
                for _ in range(2):  # twice, so each worker of two has decoded something
                    timed_decode(warm, client, warm_segments)
            best: dict[int, float] = {}
            for run in range(1, RUNS + 1):
                for workers, client in clients.items():
                    seconds = timed_decode(archive, client, segments)
                    best[workers] = min(seconds, best.get(workers, float("inf")))
                    print(f"run {run}: {workers} worker(s) {seconds:.2f} s")
        finally:
            for client in clients.values():
                cluster = client.cluster
                client.close()
                if cluster is not None:
                    cluster.close()
    ratio = best[1] / best[2]
    print(
        f"{verdict(ratio >= TARGET)} ratio decode --cluster 2 workers/1 worker {ratio:.2f} "
        f"(target >= {TARGET}; 1 worker {best[1]:.2f} s, 2 workers {best[2]:.2f} s)"
    )
    if args.json:
        write_json(args.json, "cluster", [("decode 2 workers/1 worker", ratio, ">=", TARGET, "")])


if __name__ == "__main__":
    main()
