"""Benchmark: what ``replica sql`` costs over plain DuckDB on the same archive files.

Two queries over --commands raw commands (10 million by default): a count per UTC day, and a
gap-finding window query (``lead(seq) OVER (ORDER BY seq)``, every seq sorted). Each is timed
twice in this process, alternating, on the same Parquet files:

  replica  ``replica.sql.connect(ARCHIVE, query=...)`` as ``replica sql`` calls it (defining
           the views the query names), then the query against the
           ``raw_cmds`` view, all rows fetched;
  plain    ``duckdb.connect()``, then the same query written against
           ``read_parquet('ARCHIVE/raw/date=*/hour=*/*.parquet', hive_partitioning = true)``,
           all rows fetched.

Ratios, not absolute times, because these machines are shared and noisy: the ratio says what the
views (their definition, the derived ``<stem>_utc`` columns, the typed hive partitions) add to
what DuckDB itself has to do. Target: replica/plain <= 1.2 for each query. Both sides must return
identical rows, and the gap query exactly the gaps the archive was built with. For information
only: the wall time of the ``replica sql`` CLI as a subprocess (Python start-up included). Each
measurement is taken RUNS times, interleaved, and the best counts.

The archive is synthetic and written directly, as compaction leaves one: RAW_SCHEMA rows with
RAW_WRITE_OPTIONS, one segment per UTC hour (split at SEGMENT_ROWS), a command every STEP_MS
(10 million span about four days), a few seq gaps, and 40-103 byte random-ish payloads cut from
one repeated pool of bytes, so that building 10 million rows takes seconds rather than minutes.
It is built in a temporary directory, or in ``--dir DIR``, where a later run with the same
--commands reuses it instead of building it again (a marker file records what was built; a
non-empty DIR without one is refused rather than overwritten).

    python benchmarks/query.py [--commands N] [--dir DIR] [--json FILE]

Targets are informational: the exit status is 0 unless a run itself fails (the two sides or the
CLI disagree, or the rows are not those the archive was built with).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.schemas.archive import (  # noqa: E402
    HOUR_FILES,
    MS_PER_HOUR,
    RAW_SCHEMA,
    RAW_WRITE_OPTIONS,
    ArchiveLayout,
    hour_of,
)
from replica.schemas.files import publish_parquet  # noqa: E402

import replica.sql  # noqa: E402
from benchmarks.measures import verdict, write_json  # noqa: E402
from fixtures.make_feed import START_SEQ, START_TS_MS  # noqa: E402

RUNS = 5
TIMEOUT_S = 600.0
TARGET = 1.2
STEP_MS = 35  # about 28.6 commands a second: 10 million span 4.05 days
SEGMENT_ROWS = 1_000_000  # compaction's cut inside an hour
# (fraction of the commands before the gap, seqs missing): the gaps the query must find.
GAPS = ((0.11, 1), (0.29, 2), (0.5, 17), (0.73, 1_000), (0.9, 3))
POOL_BYTES = 1 << 22  # payloads are cut from this many random-ish bytes, repeated
MARKER = ".benchmark-query.json"

QUERIES = {
    "count per day": "SELECT date, count(*) AS commands FROM {raw} GROUP BY date ORDER BY date",
    "gap finding": (
        "SELECT seq + 1 AS from_seq, next_seq - 1 AS to_seq FROM ("
        "SELECT seq, lead(seq) OVER (ORDER BY seq) AS next_seq FROM {raw}"
        ") WHERE next_seq > seq + 1 ORDER BY from_seq"
    ),
}


# ---- the archive ----------------------------------------------------------------------------


def ts_of(seq: int) -> int:
    return START_TS_MS + (seq - START_SEQ) * STEP_MS


def first_seq_after_hour(seq: int) -> int:
    """The first seq whose ts_ms falls in a later UTC hour than ``seq``'s."""
    boundary = (hour_of(ts_of(seq)) + 1) * MS_PER_HOUR
    return START_SEQ + math.ceil((boundary - START_TS_MS) / STEP_MS)


def seq_runs(n: int) -> list[range]:
    """n seqs from START_SEQ with the GAPS left out, as runs of consecutive seqs."""
    runs, seq, done = [], START_SEQ, 0
    for fraction, missing in GAPS:
        rows = int(n * fraction) - done
        runs.append(range(seq, seq + rows))
        seq += rows + missing
        done += rows
    runs.append(range(seq, seq + n - done))
    return runs


def expected_gaps(n: int) -> list[tuple[int, int]]:
    runs = seq_runs(n)
    return [(a.stop, b.start - 1) for a, b in pairwise(runs)]


def segment_seqs(n: int) -> Iterator[list[range]]:
    """The seqs of each segment: one per UTC hour, split at SEGMENT_ROWS."""
    current: list[range] = []
    rows = 0
    for run in seq_runs(n):
        seq = run.start
        while seq < run.stop:
            if current and (
                rows == SEGMENT_ROWS or hour_of(ts_of(seq)) != hour_of(ts_of(current[0].start))
            ):
                yield current
                current, rows = [], 0
            stop = min(run.stop, first_seq_after_hour(seq), seq + SEGMENT_ROWS - rows)
            current.append(range(seq, stop))
            rows += stop - seq
            seq = stop
    if current:
        yield current


def mix(seq: pa.Array, multiplier: int, bits: int) -> pa.Array:
    """Cheap per-row variation: ``bits`` middle bits of seq * an odd multiplier."""
    return pc.bit_wise_and(pc.shift_right(pc.multiply(seq, multiplier), 20), (1 << bits) - 1)


def segment_table(seqs: list[range], pool: bytes) -> pa.Table:
    seq = pa.concat_arrays([pa.array(r, pa.int64()) for r in seqs])
    ts_ms = pc.add(pc.multiply(pc.subtract(seq, START_SEQ), STEP_MS), START_TS_MS)
    ingest = pc.add(pc.multiply(ts_ms, 1000), pc.add(mix(seq, 0x9E3779B1, 9), 150))
    publish = pc.add(ingest, pc.add(mix(seq, 0x85EBCA6B, 6), 4))
    recv = pc.add(publish, pc.add(mix(seq, 0xC2B2AE35, 8), 100))
    lengths = pc.add(mix(seq, 0x27D4EB2F, 6), 40)  # 40-103 bytes
    ends = pc.cumulative_sum(lengths).cast(pa.int32())
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), ends])
    total = ends[-1].as_py()
    start = seq[0].as_py() * 7919 % len(pool)
    data = (pool * (1 + (start + total) // len(pool)))[start : start + total]
    raw = pa.Array.from_buffers(
        pa.binary(), len(seq), [None, offsets.buffers()[1], pa.py_buffer(data)]
    )
    return pa.Table.from_arrays([seq, ts_ms, ingest, publish, recv, raw], schema=RAW_SCHEMA)


def build_archive(root: Path, n: int) -> int:
    """Write n commands under root; returns the number of segments."""
    rng = random.Random(17)
    alphabet = bytes(rng.randrange(256) for _ in range(48))  # 48 byte values: ~5.6 bits a byte
    pool = rng.randbytes(POOL_BYTES).translate(bytes(alphabet[b % 48] for b in range(256)))
    layout = ArchiveLayout(root)
    segments = 0
    for seqs in segment_seqs(n):
        first, last = seqs[0].start, seqs[-1].stop - 1
        path = layout.segment_path(first, last, hour_of(ts_of(first)))
        publish_parquet(segment_table(seqs, pool), path, **RAW_WRITE_OPTIONS)
        segments += 1
    return segments


def raw_rows(root: Path) -> int:
    return sum(pq.read_metadata(s.path).num_rows for s in ArchiveLayout(root).segments())


def build_parameters(n: int) -> dict:
    return {"commands": n, "step_ms": STEP_MS, "segment_rows": SEGMENT_ROWS, "gaps": GAPS}


def prepare_archive(root: Path, n: int) -> str:
    """Build the archive in root, or reuse the one a previous run built; says which."""
    marker = root / MARKER
    wanted = json.loads(json.dumps(build_parameters(n)))  # tuples as JSON gives them back
    if marker.exists():
        if json.loads(marker.read_text()) == wanted and raw_rows(root) == n:
            return "reused"
        marker.unlink()
        shutil.rmtree(ArchiveLayout(root).raw_dir, ignore_errors=True)
    elif root.exists() and any(root.iterdir()):
        raise SystemExit(
            f"--dir {root} is not empty and holds no {MARKER} from this benchmark; "
            f"give a new or empty directory"
        )
    began = time.perf_counter()
    segments = build_archive(root, n)
    marker.write_text(json.dumps(wanted))  # last: a build cut short is never reused
    return f"built in {time.perf_counter() - began:.1f} s, {segments} segments"


# ---- the measured sides ---------------------------------------------------------------------


def run_replica(root: Path, query: str) -> tuple[float, list]:
    text = query.format(raw="raw_cmds")
    start = time.perf_counter()
    with replica.sql.connect(root, query=text) as connection:  # as ``replica sql`` connects
        rows = connection.sql(text).fetchall()
    return time.perf_counter() - start, rows


def run_plain(root: Path, query: str) -> tuple[float, list]:
    glob = str(ArchiveLayout(root.resolve()).raw_dir / HOUR_FILES)
    source = f"read_parquet('{glob}', hive_partitioning = true)"
    start = time.perf_counter()
    with duckdb.connect() as connection:
        rows = connection.sql(query.format(raw=source)).fetchall()
    return time.perf_counter() - start, rows


def run_cli(root: Path, query: str, rows: int) -> float:
    """Wall seconds of ``replica sql ROOT QUERY --format csv``; fails unless it prints rows."""
    command = [sys.executable, "-m", "replica", "sql", str(root), query.format(raw="raw_cmds")]
    command += ["--format", "csv"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - start
    printed = len(result.stdout.splitlines()) - 1  # the header
    if result.returncode != 0 or printed != rows:
        raise RuntimeError(
            f"replica sql exited {result.returncode} with {printed} rows, expected {rows}\n"
            f"stderr: {result.stderr}"
        )
    return seconds


def check_rows(name: str, rows: list, n: int) -> None:
    if name == "count per day":
        if sum(count for _date, count in rows) != n:
            raise RuntimeError(f"the days count {rows}, not {n:,} commands")
    elif rows != expected_gaps(n):
        raise RuntimeError(f"found gaps {rows}, the archive has {expected_gaps(n)}")


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--commands", type=int, default=10_000_000, metavar="N")
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="build the archive here, or reuse the one a run with the same --commands left",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the ratios here")
    args = parser.parse_args()
    if args.commands < 100:
        parser.error(f"--commands must be at least 100, was {args.commands}")
    n = args.commands
    began = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="replica-bench-query-") as tmp:
        root = args.dir if args.dir is not None else Path(tmp) / "archive"
        how = prepare_archive(root, n)
        size = sum(p.stat().st_size for p in ArchiveLayout(root).raw_dir.rglob("*.parquet"))
        print(f"{n:,} commands, {size / n:.1f} B/command on disk, {how} ({root})")

        best: dict[tuple[str, str], float] = {}
        for run in range(1, RUNS + 1):
            for name, query in QUERIES.items():
                sides = (run_plain, run_replica) if run % 2 else (run_replica, run_plain)
                results, line = {}, f"run {run} {name:<14}"
                for side in sides:
                    key = (name, side.__name__)
                    seconds, results[side] = side(root, query)
                    best[key] = min(seconds, best.get(key, math.inf))
                    line += f"  {side.__name__.removeprefix('run_')} {seconds:6.3f} s"
                if results[run_replica] != results[run_plain]:
                    raise RuntimeError(
                        f"{name}: replica returned {results[run_replica][:5]}..., "
                        f"plain {results[run_plain][:5]}..."
                    )
                check_rows(name, results[run_plain], n)
                seconds = run_cli(root, query, len(results[run_plain]))
                best[name, "cli"] = min(seconds, best.get((name, "cli"), math.inf))
                print(f"{line}  CLI {seconds:6.2f} s")

    ratios = {name: best[name, "run_replica"] / best[name, "run_plain"] for name in QUERIES}
    print()
    print(f"{'':<16}{'plain s':>10}{'replica s':>11}{'ratio':>8}{'target':>9}{'CLI s':>9}")
    for name in QUERIES:
        print(
            f"{name:<16}{best[name, 'run_plain']:>10.3f}{best[name, 'run_replica']:>11.3f}"
            f"{ratios[name]:>8.3f}{'<= ' + str(TARGET):>9}{best[name, 'cli']:>9.2f}"
        )
    print("(CLI s: the replica sql command as a subprocess, Python start-up included)")
    for name, ratio in ratios.items():
        print(f"{verdict(ratio <= TARGET)} ratio {name} replica/plain {ratio:.3f}")
    print(f"total {time.perf_counter() - began:.1f} s")
    if args.json:
        measures = [(f"{name} replica/plain", r, "<=", TARGET, "") for name, r in ratios.items()]
        write_json(args.json, "query", measures)


if __name__ == "__main__":
    main()
