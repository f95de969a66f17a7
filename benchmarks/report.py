"""Benchmark: what ``replica report`` costs over DuckDB's own aggregation of the same queries.

One synthetic UTC day of --commands raw commands (10 million by default) is built, with a few
gaps of three causes and their gap records, quarantined frames of three kinds, and arrivals at
two endpoints (every command at "a", 99 % of them at "b", up to 150 us earlier or later). Then,
each timed RUNS times, alternating:

  report  ``replica.report.write.write_report`` on the day, as ``replica report --date`` runs
          it: the views of ``replica sql``, every aggregate, ``replica stats``' per-day figures
          (bytes on disk included), the plots drawn as SVG, the page written;
  bare    ``duckdb.connect()`` with each table a plain ``read_parquet`` view, then the report's
          queries (its endpoint figures, and stats' per-day query) run on it, all rows fetched.

report/bare says what the views, the plots and the page add to what DuckDB itself has to do;
the report's absolute time is printed against the target of 30 s for ten million commands on
2 cores. Both sides must agree on the per-minute figures and the endpoint wins. Ratios, not
times, are what compare across machines; the exit status is 0 unless a run itself fails.

    python benchmarks/report.py [--commands N] [--dir DIR] [--json FILE]

The archive is written directly, like benchmarks/query.py's: one segment per UTC hour (split at
SEGMENT_ROWS), 40-103 byte payloads cut from one repeated pool of random-ish bytes. It is built in
a temporary directory, or in ``--dir DIR``, where a later run with the same --commands reuses it
(a marker file records what was built; a non-empty DIR without one is refused).
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
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.schemas.archive import (  # noqa: E402
    GAP_SCHEMA,
    MS_PER_HOUR,
    QUARANTINE_SCHEMA,
    RAW_SCHEMA,
    RAW_WRITE_OPTIONS,
    ArchiveLayout,
)
from replica.schemas.files import publish_parquet  # noqa: E402

import replica.stats  # noqa: E402
from benchmarks.measures import verdict, write_json  # noqa: E402
from replica.report import data as report_data  # noqa: E402
from replica.report.endpoints import endpoint_figures  # noqa: E402
from replica.report.write import Range, write_report  # noqa: E402
from replica.sql import COMPLETENESS_SQL  # noqa: E402

RUNS = 3
TIMEOUT_S = 600.0
TARGET_S = 30.0  # for ten million commands on 2 cores
DAY_MS = 1_795_219_200_000  # 2026-11-21T00:00Z
DAY = "2026-11-21"
START_SEQ = 900_000_000
SEGMENT_ROWS = 1_000_000
# (fraction of the commands before the gap, seqs missing, cause)
GAPS = ((0.2, 40, "jump"), (0.45, 30_000, "reconnect"), (0.7, 3, "jump"), (0.85, 9_000, "restart"))
# Bursts of quarantined frames: (hour of the day they start, kind); a frame every 7 s.
QUARANTINE_BURSTS = (
    (4.2, "bad_hex"),
    (8.5, "missing_field"),
    (8.6, "bad_hex"),
    (16.1, "out_of_range"),
)
QUARANTINE_PER_BURST = 100
POOL_BYTES = 1 << 22
MARKER = ".benchmark-report.json"
SHAPE = 3  # of the day's rate and latencies: a new shape builds the archive again


# ---- the archive ----------------------------------------------------------------------------


def seqs_and_times(n: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """n seqs with the GAPS left out, their ts_ms spread evenly over the day (a gap's seqs take
    its time), and the gap records."""
    total = n + sum(missing for _, missing, _ in GAPS)
    every = np.arange(total, dtype=np.int64)
    keep = np.ones(total, dtype=bool)
    gaps, done = [], 0
    for fraction, missing, cause in GAPS:
        first = int(n * fraction) + done
        keep[first : first + missing] = False
        gaps.append((first, missing, cause))
        done += missing
    ts_all = DAY_MS + day_times(every, total)
    records = [
        {"from_seq": START_SEQ + first, "to_seq": START_SEQ + first + missing - 1,
         "missing": missing, "cause": cause, "detected_ts_us": int(ts_all[first + missing]) * 1000,
         "before_ts_ms": int(ts_all[first - 1]), "after_ts_ms": int(ts_all[first + missing])}
        for first, missing, cause in gaps
    ]  # fmt: skip
    return START_SEQ + every[keep], ts_all[keep], records


def day_times(index: np.ndarray, total: int) -> np.ndarray:
    """Milliseconds into the day of command ``index`` of ``total``: busier in the afternoon
    (UTC) than at night, 1.6 against 0.4 of the mean rate."""
    minutes = np.arange(1441)
    rate = 1 + 0.6 * np.sin(2 * np.pi * (minutes[:-1] / 1440 - 0.3))
    share = np.concatenate([[0], np.cumsum(rate)]) / rate.sum()
    return (np.interp(index / total, share, minutes) * 60_000).astype(np.int64)


def _bump(ms_of_day: np.ndarray, centre_h: float, width_h: float) -> np.ndarray:
    """1 at ``centre_h`` hours into the day, falling to 0 ``width_h`` hours either side."""
    return np.clip(1 - np.abs(ms_of_day / MS_PER_HOUR - centre_h) / width_h, 0, None)


def scramble(seq: np.ndarray) -> np.ndarray:
    """63 random-looking bits per seq (splitmix64's finaliser), cheap and reproducible."""
    h = seq.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return ((h ^ (h >> np.uint64(31))) >> np.uint64(1)).astype(np.int64)


def raw_table(seq: np.ndarray, ts_ms: np.ndarray, pool: bytes) -> pa.Table:
    """Commands with random-ish latencies: the vendor slower for an hour after 13:00, and the
    offset between its clock and ours drifting by a few hundred microseconds over the day."""
    mix = scramble(seq)
    of_day = ts_ms - DAY_MS
    slow = (2_500 * _bump(of_day, 13.5, 0.5) * ((mix >> 3) & 7) / 7).astype(np.int64)
    drift = (300 * np.sin(2 * np.pi * of_day / 86_400_000)).astype(np.int64)
    ingest = ts_ms * 1000 + 150 + (mix & 511)
    publish = ingest + 4 + ((mix >> 9) & 63) + slow
    recv = publish + 100 + ((mix >> 15) & 255) + drift
    lengths = 40 + ((mix >> 3) & 63)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    start = int(seq[0]) * 7919 % len(pool)
    total = int(offsets[-1])
    data = (pool * (1 + (start + total) // len(pool)))[start : start + total]
    raw = pa.Array.from_buffers(
        pa.binary(), len(seq), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)]
    )
    columns = [pa.array(c) for c in (seq, ts_ms, ingest, publish, recv)] + [raw]
    return pa.Table.from_arrays(columns, schema=RAW_SCHEMA)


def arrivals_table(raw: pa.Table) -> pa.Table:
    seq = raw.column("seq").to_numpy()
    recv = raw.column("recv_ts_us").to_numpy()
    at_b = seq % 100 != 0
    # b is the faster by night and the slower by day
    ahead = 200 * np.cos(2 * np.pi * (raw.column("ts_ms").to_numpy() - DAY_MS) / 86_400_000)
    offset = (scramble(seq) >> 20) % 301 - 150 - ahead.astype(np.int64)
    return pa.table(
        {
            "seq": np.concatenate([seq, seq[at_b]]),
            "endpoint": ["a"] * len(seq) + ["b"] * int(at_b.sum()),
            "recv_ts_us": np.concatenate([recv, (recv + offset)[at_b]]),
        }
    )


def build_archive(root: Path, n: int) -> int:
    """Write the day under root; returns the number of raw segments."""
    rng = random.Random(17)
    alphabet = bytes(rng.randrange(256) for _ in range(48))
    pool = rng.randbytes(POOL_BYTES).translate(bytes(alphabet[b % 48] for b in range(256)))
    layout = ArchiveLayout(root)
    seq, ts_ms, gaps = seqs_and_times(n)
    hour = (ts_ms - DAY_MS) // MS_PER_HOUR
    segments = 0
    for h in np.unique(hour):
        where = np.flatnonzero(hour == h)
        for at in range(0, len(where), SEGMENT_ROWS):
            chosen = where[at : at + SEGMENT_ROWS]
            table = raw_table(seq[chosen], ts_ms[chosen], pool)
            path = layout.segment_path(
                int(seq[chosen[0]]), int(seq[chosen[-1]]), DAY_MS // MS_PER_HOUR + int(h)
            )
            publish_parquet(table, path, **RAW_WRITE_OPTIONS)
            arrivals = root / "arrivals" / f"date={DAY}" / f"{path.stem}.parquet"
            arrivals.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrivals_table(table), arrivals, compression="zstd")
            segments += 1
    for i, gap in enumerate(gaps):
        path = layout.unit_path(layout.gaps_dir, gap["after_ts_ms"], f"unit-{i}")
        publish_parquet(pa.Table.from_pylist([gap], schema=GAP_SCHEMA), path)
    frames = [
        {"recv_ts_us": (DAY_MS + int(hour * MS_PER_HOUR)) * 1000 + 7_000_000 * i,
         "kind": kind, "reason": "benchmark", "seq": None, "frame": "{}", "frame_bytes": 2}
        for hour, kind in QUARANTINE_BURSTS
        for i in range(QUARANTINE_PER_BURST)
    ]  # fmt: skip
    path = layout.unit_path(layout.quarantine_dir, DAY_MS, "unit-q")
    publish_parquet(pa.Table.from_pylist(frames, schema=QUARANTINE_SCHEMA), path)
    return segments


def prepare_archive(root: Path, n: int) -> str:
    """Build the archive in root, or reuse the one a previous run built; says which."""
    marker = root / MARKER
    wanted = {"commands": n, "segment_rows": SEGMENT_ROWS, "gaps": [list(g) for g in GAPS],
              "shape": SHAPE}  # fmt: skip
    if marker.exists():
        if json.loads(marker.read_text()) == wanted:
            return "reused"
        marker.unlink()
        for name in ("raw", "gaps", "quarantine", "arrivals"):
            shutil.rmtree(root / name, ignore_errors=True)
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

ASKED = Range(DAY_MS, DAY_MS + 86_400_000)
BARE_QUERIES = {
    "span": report_data.SPAN_SQL,
    "per_minute": report_data.PER_MINUTE_SQL,
    "gaps_by_cause": report_data.GAPS_BY_CAUSE_SQL,
    "gap_bands": report_data.GAP_BANDS_SQL,
    "quarantine": report_data.QUARANTINE_SQL,
    "quarantine_by_day": report_data.QUARANTINE_BY_DAY_SQL,
    "stats per day": replica.stats._PER_DAY_SQL,
}


def run_report(root: Path, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    data = write_report(root, out, ASKED)
    return time.perf_counter() - start, data


def run_bare(root: Path) -> tuple[float, dict]:
    """The report's queries on plain ``read_parquet`` views: DuckDB's own work."""
    start = time.perf_counter()
    results = {}
    with duckdb.connect() as db:
        db.execute("SET TimeZone = 'UTC'")
        for name, pattern, hour in (
            ("raw_cmds", "raw/date=*/hour=*/*.parquet", ", 'hour': INTEGER"),
            ("gaps", "gaps/date=*/*.parquet", ""),
            ("quarantine", "quarantine/date=*/*.parquet", ""),
            ("arrivals", "arrivals/date=*/*.parquet", ""),
        ):
            db.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{root}/{pattern}', "
                f"hive_partitioning = true, hive_types = {{'date': DATE{hour}}})"
            )
        db.execute(f"CREATE VIEW completeness AS {COMPLETENESS_SQL}")
        parameters = ASKED.parameters()
        for name, sql in BARE_QUERIES.items():
            used = {k: v for k, v in parameters.items() if f"${k}" in sql}
            results[name] = db.execute(sql, used).fetchall()
        results["endpoints"] = endpoint_figures(db, parameters)
    return time.perf_counter() - start, results


def check(data: dict, bare: dict, n: int) -> None:
    minutes = data["per_minute"]
    columns = [minutes[name] for name in minutes]
    if list(zip(*columns, strict=True)) != bare["per_minute"]:
        raise RuntimeError("the report's per-minute figures differ from bare DuckDB's")
    if sum(minutes["commands"]) != n:
        raise RuntimeError(f"the report counts {sum(minutes['commands']):,} commands, not {n:,}")
    if data["endpoints"] != bare["endpoints"]:
        raise RuntimeError("the report's endpoint figures differ from bare DuckDB's")


def run_cli(root: Path, out: Path) -> float:
    command = [sys.executable, "-m", "replica", "report", str(root), "--date", DAY, "-o", str(out)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"replica report exited {result.returncode}: {result.stderr}")
    return time.perf_counter() - start


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
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the measures here")
    args = parser.parse_args()
    if args.commands < 10_000:
        parser.error(f"--commands must be at least 10000, was {args.commands}")
    n = args.commands
    began = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="replica-bench-report-") as tmp:
        root = args.dir.resolve() if args.dir is not None else Path(tmp) / "archive"
        how = prepare_archive(root, n)
        size = sum(p.stat().st_size for p in ArchiveLayout(root).raw_dir.rglob("*.parquet"))
        print(f"{n:,} commands in one day, {size / n:.1f} B/command on disk, {how} ({root})")
        out = Path(tmp) / "report.html"
        best = {"report": math.inf, "bare": math.inf}
        for run in range(1, RUNS + 1):
            report_s, data = run_report(root, out)
            bare_s, bare = run_bare(root)
            check(data, bare, n)
            best = {"report": min(best["report"], report_s), "bare": min(best["bare"], bare_s)}
            print(f"run {run}  report {report_s:7.2f} s  bare {bare_s:7.2f} s")
        page_kb = out.stat().st_size / 1000
        cli_s = run_cli(root, out)

    ratio = best["report"] / best["bare"]
    print()
    print(f"bare DuckDB, the same queries   {best['bare']:7.2f} s")
    print(f"replica report (in process)     {best['report']:7.2f} s  ({page_kb:,.0f} kB page)")
    print(f"replica report --date (CLI)     {cli_s:7.2f} s  (Python start-up included)")
    print(f"ratio report/bare               {ratio:7.2f}")
    print(
        f"{verdict(best['report'] <= TARGET_S)} report {best['report']:.1f} s for {n:,} commands "
        f"(target: {TARGET_S:.0f} s for a day of 10,000,000)"
    )
    print(f"total {time.perf_counter() - began:.1f} s")
    if args.json:
        write_json(args.json, "report", [("report seconds", best["report"], "<=", TARGET_S, "s")])


if __name__ == "__main__":
    main()
