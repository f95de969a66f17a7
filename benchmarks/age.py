"""Benchmark: nightly maintenance of one day costs the same on a young archive and an old one.

Two histories are built, --short days (30 by default) and --long days (365), each day 24 hourly
segments of ROWS_PER_SEGMENT commands (a young archive and an old one of the same shape; few
rows, so that 365 days build in seconds). On each, the nightly steps for its last day are timed
in this process, best of RUNS, runs alternating between the histories:

  compact  ``compact(ARCHIVE, date=D)`` with the day's done-mark removed first, so the day is
           planned (listed with its neighbours, footers read) every run: nothing merges
  verify   ``verify(ARCHIVE, [D])``, as ``replica verify --date D``
  stats    ``archive_stats(ARCHIVE, [D])``, as ``replica stats --date D``

Target: long/short <= 1.5 for each. For information: ``compact`` of every day once all are
marked done (``replica compact`` as cron runs it), long/short.

Then memory: one segment of --large-rows commands (1,048,576 by default: compaction's largest,
8 row groups) with incompressible 100-byte payloads, read in a fresh process by ``verify`` and,
for comparison, by a bare ``pyarrow.parquet.read_table``; peak RSS of each. Target: verify's
peak <= 300 MB. For information: verify/read_table.

    python benchmarks/age.py [--short DAYS] [--long DAYS] [--large-rows N] [--json FILE]

Targets are informational: the exit status is 0 unless a run itself fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.schemas.archive import (  # noqa: E402
    MS_PER_HOUR,
    RAW_SCHEMA,
    RAW_WRITE_OPTIONS,
    ArchiveLayout,
)

from benchmarks.measures import verdict, write_json  # noqa: E402
from replica.maintenance.compact import compact  # noqa: E402
from replica.maintenance.compact_marks import mark_path  # noqa: E402
from replica.maintenance.verify import verify  # noqa: E402
from replica.stats import archive_stats  # noqa: E402

RUNS = 5
TARGET = 1.5
TARGET_MB = 300
ROWS_PER_SEGMENT = 4
LAST_DAY = date(2026, 11, 29)
PAYLOAD_BYTES = 100


def build_history(root: Path, days: int) -> date:
    """``days`` days ending LAST_DAY, 24 hourly segments each; returns the last day."""
    layout = ArchiveLayout(root)
    seq = 1
    options = {k: v for k, v in RAW_WRITE_OPTIONS.items() if k != "row_group_size"}
    first = LAST_DAY - timedelta(days=days - 1)
    hour0 = int(datetime.combine(first, datetime.min.time(), UTC).timestamp()) // 3600
    for hour in range(hour0, hour0 + 24 * days):
        seqs = np.arange(seq, seq + ROWS_PER_SEGMENT, dtype=np.int64)
        ts = hour * MS_PER_HOUR + 1000 * (seqs - seq)
        table = pa.table(
            [seqs, ts, ts * 1000, ts * 1000 + 20, ts * 1000 + 200,
             pa.array([b"x" * 60] * ROWS_PER_SEGMENT, pa.binary())],
            schema=RAW_SCHEMA,
        )  # fmt: skip
        path = layout.segment_path(seq, seq + ROWS_PER_SEGMENT - 1, hour)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, **options)
        seq += ROWS_PER_SEGMENT
    return LAST_DAY


def steps(root: Path, day: date) -> dict[str, Callable[[], object]]:
    """Each nightly step of ``day``, and a whole-archive compaction, as a callable to time."""
    after = datetime.combine(day + timedelta(days=2), datetime.min.time(), UTC)
    layout = ArchiveLayout(root)

    def compact_day() -> None:
        mark_path(layout, day).unlink(missing_ok=True)
        summary = compact(root, day, after)
        assert summary.days[0].segments_in == 0, summary.lines()

    def verify_day() -> None:
        report = verify(root, [day])
        assert report.ok and report.rows == 24 * ROWS_PER_SEGMENT, report.problems

    def stats_day() -> None:
        (stats,) = archive_stats(root, [day])
        assert stats.commands == 24 * ROWS_PER_SEGMENT and stats.missing == 0

    compact(root, now=after)  # every day marked
    return {
        "compact --date": compact_day,
        "verify --date": verify_day,
        "stats --date": stats_day,
        "compact (all days marked)": lambda: compact(root, now=after),
    }


def best_times(histories: dict[int, dict[str, Callable[[], object]]]) -> dict[int, dict]:
    """The best of RUNS seconds of each step on each history, runs alternating between the
    histories so that the shared machine's noise falls on both alike."""
    times: dict[int, dict[str, float]] = {days: {} for days in histories}
    for _ in range(RUNS):
        for days, callables in histories.items():
            for step, call in callables.items():
                began = time.perf_counter()
                call()
                elapsed = time.perf_counter() - began
                times[days][step] = min(elapsed, times[days].get(step, elapsed))
    return times


# The peak RSS of this process alone: VmHWM, since ru_maxrss carries over the parent's peak
# across fork and exec on Linux.
_PEAK = """
import sys
from pathlib import Path
if sys.argv[1] == "verify":
    from replica.maintenance.verify import verify
    report = verify(Path(sys.argv[2]))
    assert report.ok, report.problems
else:
    import pyarrow.parquet as pq
    pq.read_table(sys.argv[2])
status = Path("/proc/self/status").read_text()
print(int(status.split("VmHWM:")[1].split()[0]) * 1024)
"""


def large_segment(root: Path, rows: int) -> Path:
    """One segment of ``rows`` commands in one hour, written as compaction writes it."""
    seqs = np.arange(1, rows + 1, dtype=np.int64)
    hour = 490_000
    ts = hour * MS_PER_HOUR + seqs * (MS_PER_HOUR // (rows + 1))
    data = np.frombuffer(os.urandom(rows * PAYLOAD_BYTES), dtype=np.uint8)
    offsets = np.arange(0, (rows + 1) * PAYLOAD_BYTES, PAYLOAD_BYTES, dtype=np.int32)
    raw = pa.Array.from_buffers(
        pa.binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    table = pa.table([seqs, ts, ts * 1000, ts * 1000 + 20, ts * 1000 + 200, raw], RAW_SCHEMA)
    path = ArchiveLayout(root).segment_path(1, rows, hour)
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, **RAW_WRITE_OPTIONS)
    return path


def peak_rss(mode: str, target: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, mode, str(target)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--short", type=int, default=30, metavar="DAYS")
    parser.add_argument("--long", type=int, default=365, metavar="DAYS")
    parser.add_argument("--large-rows", type=int, default=8 * 131_072, metavar="N")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the measures here")
    args = parser.parse_args()
    if not 2 <= args.short < args.long:
        parser.error("need 2 <= --short < --long")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="replica-bench-age-") as tmp:
        histories = {}
        for days in (args.short, args.long):
            root = Path(tmp) / f"days{days}"
            t0 = time.perf_counter()
            histories[days] = steps(root, build_history(root, days))
            print(f"{days} days, {24 * days:,} segments, built in {time.perf_counter() - t0:.1f} s")
        seconds = best_times(histories)
        print(f"  {'best of ' + str(RUNS):<26} {args.short:>6} d {args.long:>8} d")
        for step in seconds[args.short]:
            print(
                f"  {step:<26} {seconds[args.short][step] * 1000:8.1f} ms "
                f"{seconds[args.long][step] * 1000:8.1f} ms"
            )
        large = large_segment(Path(tmp) / "large", args.large_rows)
        size = large.stat().st_size
        verify_peak, bare_peak = peak_rss("verify", large.parents[3]), peak_rss("bare", large)
    measures = []
    for step in seconds[args.short]:
        ratio = seconds[args.long][step] / seconds[args.short][step]
        informational = step.startswith("compact (")
        label = f"{step} {args.long}d/{args.short}d"
        print(f"{'info' if informational else verdict(ratio <= TARGET)} ratio {label} {ratio:.3f}")
        if not informational:
            measures.append((label, ratio, "<=", TARGET, ""))
    print(
        f"one segment of {args.large_rows:,} commands ({size / 1e6:.0f} MB on disk): peak RSS "
        f"verify {verify_peak / 1e6:.0f} MB, read_table {bare_peak / 1e6:.0f} MB"
    )
    print(f"{verdict(verify_peak <= TARGET_MB * 1e6)} verify peak RSS {verify_peak / 1e6:.0f} MB")
    print(f"info ratio verify/read_table peak RSS {verify_peak / bare_peak:.3f}")
    measures.append(
        ("verify peak RSS, one large segment", verify_peak / 1e6, "<=", TARGET_MB, "MB")
    )
    print(f"total {time.perf_counter() - began:.1f} s")
    if args.json:
        write_json(args.json, "age", measures)


if __name__ == "__main__":
    main()
