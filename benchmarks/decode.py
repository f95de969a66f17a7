"""Benchmark: how fast ``replica decode`` turns an archive's payloads into typed tables.

Throughput is reported as ratios against baselines measured in the same run on the same payloads,
because these machines are shared and noisy: an absolute cmds/s threshold would flap with the
neighbours, while a ratio says what the decoder's generic, descriptor-driven mapping costs over
the best that pure Python can do with the same parser.

Protobuf payloads (contract v1), every one of them read back from the archive's Parquet so all
three see identical bytes:

  (a) a bare ``ReplicaCommand.FromString`` loop: the floor, parsing and nothing else;
  (b) a hand-written loop for the v1 schema: parse, ``WhichOneof``, then append every field of
      the same rows and columns ``replica decode`` produces (keys and envelope included,
      repeated funding rates, oracle prices and cancel_all assets one row per element) to
      Python lists, bytes and enums as they come and nothing converted to Arrow: the practical
      limit for pure Python;
  (c) the real ``replica decode ARCHIVE`` CLI in a subprocess, timed end to end: process
      start-up, reading Parquet, decoding and writing every decoded table.

Target (c)/(b) >= 0.7. Node JSON blocks: ``replica decode`` against a bare ``json.loads`` loop
that walks every action of every bundle, target >= 0.7 as well. Mainnet-shaped node blocks
(``--blocks``, 1,000 answered actions each: 80% order, 12% cancelByCloid, 8% cancel): against a
``json.loads`` loop that walks every action and its response, target >= 1.0; and ``--jobs 2``
against ``--jobs 1``, both given every core this process started with, target >= 1.8, on
``--jobs-blocks`` blocks (800 by default, 33 segments of 25): the issue's aim is a day of a
billion actions in an hour on two cores, and a run pays about 0.4 s to start the CLI and 0.4 s
to start a worker once, not per segment, so on 200 blocks (3.5 s of work) start-up alone caps
the ratio near 1.6. The ratio on the ``--blocks`` blocks is printed beside it. For information
only: ``decode_archive`` in this process (no start-up) and the CLI on an empty archive
(start-up alone).

Everything runs on one core: this process pins itself before it spawns anything, and the CLI is
also started under ``taskset`` when there is one. The archives are written as the recorder seals
them (RAW_SCHEMA, its encodings and zstd level, hive paths from ``ArchiveLayout``), from seeded
``fixtures.make_feed`` payloads spread over three UTC hours, so each is a few segments split at
hour boundaries and at most 500,000 rows. Each measurement is taken three times, interleaved,
and the best counts.

    python benchmarks/decode.py [--commands N] [--blocks N] [--jobs-blocks N] [--profile]
        [--json FILE]

Targets are informational: the exit status is 0 unless a run itself fails (the CLI exits non-zero
or (b) does not produce the row counts ``replica decode`` wrote).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.decoder.archive import decode_archive  # noqa: E402
from replica.decoder.core import Decoder  # noqa: E402
from replica.schemas.archive import (  # noqa: E402
    MS_PER_HOUR,
    RAW_SCHEMA,
    ArchiveLayout,
    hour_of,
    raw_write_options,
)
from replica.schemas.decoded import DECODED_DIR, NODE_FACT_FIELDS  # noqa: E402
from replica.schemas.files import publish_parquet  # noqa: E402
from replica.schemas.hyperliquid.replica.v1.replica_pb2 import ReplicaCommand  # noqa: E402
from replica.schemas.metadata import RECORDER_KEY, SOURCE_KEY  # noqa: E402

from benchmarks.measures import verdict, write_json  # noqa: E402
from fixtures.make_feed import (  # noqa: E402
    START_SEQ,
    START_TS_MS,
    mainnet_block,
    node_block,
    protobuf_command,
)

RUNS = 3
JOBS_RUNS = 2
TIMEOUT_S = 600.0
TARGET = 0.7
MAINNET_TARGET = 1.0
JOBS_TARGET = 1.8
# A mainnet hour is about 50,000 blocks, one segment; a few hundred blocks within one hour are
# cut into segments of this many, so that --jobs has segments enough to share (200: eight).
MAINNET_SEGMENT_BLOCKS = 25
SEGMENT_ROWS = 500_000  # the recorder's --segment-rows default
ARCHIVE_HOURS = 3  # payloads are spread over this many UTC hours: a few segments
NODE_SHARE = 0.15  # node blocks per protobuf command, as in the fixture feed
FIRST_ROUND = 990_612_480

RAW_METADATA = {RECORDER_KEY: "benchmark", SOURCE_KEY: "benchmarks/decode.py"}


# ---- the archives -------------------------------------------------------------------------


def build_archive(
    root: Path,
    count: int,
    seed: int,
    payload: Callable[[random.Random, int, int], bytes],
    segment_rows: int = SEGMENT_ROWS,
    hours: int = ARCHIVE_HOURS,
) -> int:
    """Write ``count`` payloads as raw segments under ``root``; returns the number of segments.

    ``payload(rng, ts_ms, i)`` makes the i-th payload. Timestamps rise by random steps from the
    top of an hour over ``hours`` hours; a segment is sealed at each UTC hour boundary and at
    ``segment_rows`` rows, like the recorder's."""
    rng = random.Random(seed)
    layout = ArchiveLayout(root)
    step = max(2, 2 * hours * MS_PER_HOUR // count)
    ts_ms = hour_of(START_TS_MS) * MS_PER_HOUR
    segments = 0
    rows: dict[str, list] = {name: [] for name in RAW_SCHEMA.names}

    def seal() -> None:
        nonlocal segments
        seqs = rows["seq"]
        path = layout.segment_path(seqs[0], seqs[-1], hour_of(rows["ts_ms"][0]))
        table = pa.Table.from_pydict(rows, schema=RAW_SCHEMA.with_metadata(RAW_METADATA))
        publish_parquet(table, path, **raw_write_options(table))
        segments += 1
        for column in rows.values():
            column.clear()

    for i in range(count):
        if rows["seq"] and (
            len(rows["seq"]) == segment_rows or hour_of(ts_ms) != hour_of(rows["ts_ms"][0])
        ):
            seal()
        ingest_ts_us = ts_ms * 1000 + rng.randint(150, 900)
        publish_ts_us = ingest_ts_us + rng.randint(4, 60)
        rows["seq"].append(START_SEQ + i)
        rows["ts_ms"].append(ts_ms)
        rows["ingest_ts_us"].append(ingest_ts_us)
        rows["publish_ts_us"].append(publish_ts_us)
        rows["recv_ts_us"].append(publish_ts_us + rng.randint(100, 400))
        rows["raw"].append(payload(rng, ts_ms, i))
        ts_ms += rng.randint(1, step - 1)
    if rows["seq"]:
        seal()
    return segments


def read_archive(root: Path) -> tuple[list[int], list[int], list[bytes]]:
    """seq, ts_ms and payload of every raw row, in seq order, as the decoder reads them."""
    seqs: list[int] = []
    ts_ms: list[int] = []
    payloads: list[bytes] = []
    for segment in ArchiveLayout(root).segments():
        raw = pq.read_table(segment.path, columns=["seq", "ts_ms", "raw"])
        seqs += raw.column("seq").to_pylist()
        ts_ms += raw.column("ts_ms").to_pylist()
        payloads += raw.column("raw").to_pylist()
    return seqs, ts_ms, payloads


# ---- (a) and (b): the protobuf baselines ----------------------------------------------------


def bare_parse(seqs: list[int], ts_ms: list[int], payloads: list[bytes]) -> int:
    parse = ReplicaCommand.FromString
    for payload in payloads:
        parse(payload)
    return len(payloads)


class Columns:
    """One table's columns as Python lists, and their bound ``append`` methods."""

    def __init__(self, names: str) -> None:
        self.columns: dict[str, list] = {name: [] for name in names.split()}
        self.appends = tuple(column.append for column in self.columns.values())

    @property
    def rows(self) -> int:
        return len(self.columns["seq"])


KEYS = "seq idx time_ms kind block user "
# The columns (b) fills: those of the tables ``replica decode`` writes for v1 commands, checked
# against the decoder's schemas before anything is timed.
HAND_COLUMNS = {
    "orders": KEYS + "asset is_buy px sz reduce_only tif trigger_px trigger_is_market "
    "trigger_take_profit cloid oid",
    "cancels": KEYS + "asset oid cloid",
    "fills": KEYS + "asset px sz taker_side maker taker maker_oid taker_oid tid fee",
    "liquidations": KEYS + "asset liquidated_user is_long sz mark_px insurance_fund_delta",
    "funding": KEYS + "asset rate premium",
    "oracle": KEYS + "validator asset px",
    "withdrawals": KEYS + "destination amount_usd nonce",
    "deposits": KEYS + "depositor amount_usd eth_tx_hash",
    "undecoded": "seq idx time_ms reason size",
}


def check_hand_columns() -> None:
    """(b) must fill every column the decoder writes, or it is not the same work (but the
    columns only node actions fill, which protobuf rows get as one null array per table)."""
    schemas = Decoder().schemas
    for table, names in HAND_COLUMNS.items():
        node_only = {field.name for field in NODE_FACT_FIELDS.get(table, ())}
        if names.split() != [name for name in schemas[table].names if name not in node_only]:
            raise RuntimeError(
                f"(b) fills {table} with {names.split()}, the decoder writes "
                f"{schemas[table].names}: update HAND_COLUMNS and hand_written()"
            )


def hand_written(seqs: list[int], ts_ms: list[int], payloads: list[bytes]) -> dict[str, int]:
    """Every field of every v1 command into per-column lists: rows per table."""
    tables = {table: Columns(names) for table, names in HAND_COLUMNS.items()}
    orders, cancels, fills = tables["orders"], tables["cancels"], tables["fills"]
    liquidations, funding, oracle = tables["liquidations"], tables["funding"], tables["oracle"]
    withdrawals, deposits = tables["withdrawals"], tables["deposits"]
    undecoded = tables["undecoded"]
    o_seq, o_idx, o_time, o_kind, o_block, o_user = orders.appends[:6]
    o_asset, o_is_buy, o_px, o_sz, o_reduce, o_tif = orders.appends[6:12]
    o_trigger_px, o_trigger_market, o_trigger_tp, o_cloid, o_oid = orders.appends[12:]
    c_seq, c_idx, c_time, c_kind, c_block, c_user = cancels.appends[:6]
    c_asset, c_oid, c_cloid = cancels.appends[6:]
    f_seq, f_idx, f_time, f_kind, f_block, f_user = fills.appends[:6]
    f_asset, f_px, f_sz, f_side, f_maker, f_taker = fills.appends[6:12]
    f_maker_oid, f_taker_oid, f_tid, f_fee = fills.appends[12:]
    l_seq, l_idx, l_time, l_kind, l_block, l_user = liquidations.appends[:6]
    l_asset, l_liquidated, l_is_long, l_sz, l_mark, l_insurance = liquidations.appends[6:]
    r_seq, r_idx, r_time, r_kind, r_block, r_user = funding.appends[:6]
    r_asset, r_rate, r_premium = funding.appends[6:]
    p_seq, p_idx, p_time, p_kind, p_block, p_user = oracle.appends[:6]
    p_validator, p_asset, p_px = oracle.appends[6:]
    w_seq, w_idx, w_time, w_kind, w_block, w_user = withdrawals.appends[:6]
    w_destination, w_amount, w_nonce = withdrawals.appends[6:]
    d_seq, d_idx, d_time, d_kind, d_block, d_user = deposits.appends[:6]
    d_depositor, d_amount, d_hash = deposits.appends[6:]
    u_seq, u_idx, u_time, u_reason, u_size = undecoded.appends

    parse = ReplicaCommand.FromString
    for seq, ts, payload in zip(seqs, ts_ms, payloads, strict=True):
        command = parse(payload)
        kind = command.WhichOneof("kind")
        time_ms = command.time_ms or ts
        block = command.block
        user = command.user
        if kind == "order":
            m = command.order
            o_seq(seq)
            o_idx(0)
            o_time(time_ms)
            o_kind(kind)
            o_block(block)
            o_user(user)
            o_asset(m.asset)
            o_is_buy(m.is_buy)
            o_px(m.px)
            o_sz(m.sz)
            o_reduce(m.reduce_only)
            o_tif(m.tif)
            if m.HasField("trigger"):
                trigger = m.trigger
                o_trigger_px(trigger.trigger_px)
                o_trigger_market(trigger.is_market)
                o_trigger_tp(trigger.take_profit)
            else:
                o_trigger_px(None)
                o_trigger_market(None)
                o_trigger_tp(None)
            o_cloid(m.cloid)
            o_oid(m.oid)
        elif kind == "cancel":
            m = command.cancel
            c_seq(seq)
            c_idx(0)
            c_time(time_ms)
            c_kind(kind)
            c_block(block)
            c_user(user)
            c_asset(m.asset)
            c_oid(m.oid if m.HasField("oid") else None)
            c_cloid(m.cloid)
        elif kind == "fill":
            m = command.fill
            f_seq(seq)
            f_idx(0)
            f_time(time_ms)
            f_kind(kind)
            f_block(block)
            f_user(user)
            f_asset(m.asset)
            f_px(m.px)
            f_sz(m.sz)
            f_side(m.taker_side)
            f_maker(m.maker)
            f_taker(m.taker)
            f_maker_oid(m.maker_oid)
            f_taker_oid(m.taker_oid)
            f_tid(m.tid)
            f_fee(m.fee)
        elif kind == "cancel_all":
            assets = command.cancel_all.assets or [None]  # an empty one is still a row
            for idx, asset in enumerate(assets):
                c_seq(seq)
                c_idx(idx)
                c_time(time_ms)
                c_kind(kind)
                c_block(block)
                c_user(user)
                c_asset(asset)
                c_oid(None)
                c_cloid(None)
        elif kind == "oracle":
            m = command.oracle
            validator = m.validator
            for idx, price in enumerate(m.prices):
                p_seq(seq)
                p_idx(idx)
                p_time(time_ms)
                p_kind(kind)
                p_block(block)
                p_user(user)
                p_validator(validator)
                p_asset(price.asset)
                p_px(price.px)
        elif kind == "funding":
            for idx, rate in enumerate(command.funding.rates):
                r_seq(seq)
                r_idx(idx)
                r_time(time_ms)
                r_kind(kind)
                r_block(block)
                r_user(user)
                r_asset(rate.asset)
                r_rate(rate.rate)
                r_premium(rate.premium)
        elif kind == "liquidation":
            m = command.liquidation
            l_seq(seq)
            l_idx(0)
            l_time(time_ms)
            l_kind(kind)
            l_block(block)
            l_user(user)
            l_asset(m.asset)
            l_liquidated(m.liquidated_user)
            l_is_long(m.is_long)
            l_sz(m.sz)
            l_mark(m.mark_px)
            l_insurance(m.insurance_fund_delta)
        elif kind == "withdrawal":
            m = command.withdrawal
            w_seq(seq)
            w_idx(0)
            w_time(time_ms)
            w_kind(kind)
            w_block(block)
            w_user(user)
            w_destination(m.destination)
            w_amount(m.amount_usd)
            w_nonce(m.nonce)
        elif kind == "deposit":
            m = command.deposit
            d_seq(seq)
            d_idx(0)
            d_time(time_ms)
            d_kind(kind)
            d_block(block)
            d_user(user)
            d_depositor(m.depositor)
            d_amount(m.amount_usd)
            d_hash(m.eth_tx_hash)
        else:
            u_seq(seq)
            u_idx(0)
            u_time(ts)
            u_reason("no kind")
            u_size(len(payload))
    return {name: table.rows for name, table in tables.items() if table.rows}


# ---- the node JSON baseline -----------------------------------------------------------------


def json_walk(seqs: list[int], ts_ms: list[int], payloads: list[bytes]) -> int:
    """``json.loads`` each block and touch every action's type and items; returns actions."""
    loads = json.loads
    actions = 0
    for payload in payloads:
        doc = loads(payload)
        for _bundle_hash, bundle in doc["abci_block"]["signed_action_bundles"]:
            for signed in bundle["signed_actions"]:
                action = signed["action"]
                action["type"]
                for _key, _value in action.items():
                    pass
                actions += 1
    return actions


def json_walk_responses(seqs: list[int], ts_ms: list[int], payloads: list[bytes]) -> int:
    """``json_walk``, and each action's response too (mainnet blocks are always answered)."""
    loads = json.loads
    actions = 0
    for payload in payloads:
        doc = loads(payload)
        resps = doc["resps"]
        answers = dict(resps["Full"]) if resps is not None else {}
        for bundle_hash, bundle in doc["abci_block"]["signed_action_bundles"]:
            results = answers.get(bundle_hash, ())
            for position, signed in enumerate(bundle["signed_actions"]):
                action = signed["action"]
                action["type"]
                for _key, _value in action.items():
                    pass
                if position < len(results):
                    for _key, _value in results[position]["res"].items():
                        pass
                actions += 1
    return actions


# ---- (c): replica decode --------------------------------------------------------------------


def pin_to_one_core() -> int | None:
    """Pin this process, and so every child, to one core; returns it (None if unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def cli_command(archive: Path, cores: int | set[int] | None, jobs: int = 1) -> list[str]:
    command = [sys.executable, "-m", "replica", "decode", str(archive), "--jobs", str(jobs)]
    taskset = shutil.which("taskset")
    if cores is not None and taskset:
        listed = ",".join(map(str, sorted(cores))) if isinstance(cores, set) else str(cores)
        command = [taskset, "-c", listed, *command]
    return command


def forget_decoded(archive: Path) -> None:
    shutil.rmtree(archive / DECODED_DIR, ignore_errors=True)


def run_cli(archive: Path, segments: int, cores: int | set[int] | None, jobs: int = 1) -> float:
    """Seconds for the real ``replica decode`` to decode every segment of ``archive``."""
    forget_decoded(archive)
    command = cli_command(archive, cores, jobs)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - start
    expected = f"decoded {segments} of {segments} segments"
    if result.returncode != 0 or not result.stdout.startswith(expected):
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}, expected {expected!r}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return seconds


def run_in_process(archive: Path, segments: int) -> tuple[float, dict[str, int]]:
    """Seconds for ``decode_archive`` here (no start-up), and the rows it wrote per table."""
    forget_decoded(archive)
    start = time.perf_counter()
    summary = decode_archive(archive)
    seconds = time.perf_counter() - start
    if summary.decoded != segments or summary.failed:
        raise RuntimeError(f"decode_archive: {summary.to_dict()}")
    return seconds, dict(summary.rows)


def timed(function: Callable, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def profile_decode(archive: Path, top: int = 25) -> str:
    forget_decoded(archive)
    profiler = cProfile.Profile()
    profiler.runcall(decode_archive, archive)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ---- mainnet-shaped blocks ------------------------------------------------------------------


def build_mainnet(archive: Path, blocks: int) -> int:
    """``blocks`` mainnet-shaped blocks in one hour, in segments of ``MAINNET_SEGMENT_BLOCKS``;
    returns the number of segments."""
    return build_archive(
        archive,
        blocks,
        17,
        lambda rng, ts, i: mainnet_block(rng, ts, FIRST_ROUND + i),
        segment_rows=MAINNET_SEGMENT_BLOCKS,
        hours=1,
    )


def mainnet(blocks: int, jobs_blocks: int, core: int | None, cpus: set[int] | None) -> list[tuple]:
    """Decode ``blocks`` mainnet-shaped blocks (1,000 answered actions each) against the bare
    ``json.loads`` walk of every action and response, on one core; then ``--jobs 2`` against
    ``--jobs 1`` with every core this process had, on those blocks and on ``jobs_blocks``.
    Returns the measures for ``--json``."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="replica-bench-mainnet-") as tmp:
        archive = Path(tmp) / "mainnet"
        segments = build_mainnet(archive, blocks)
        payloads = read_archive(archive)
        size = sum(map(len, payloads[2]))
        print(
            f"\n{blocks:,} mainnet-shaped blocks ({size / blocks / 1e6:.2f} MB each) in "
            f"{segments} segments, built in {time.perf_counter() - began:.1f} s"
        )
        best: dict[str, float] = {}
        for run in range(1, RUNS + 1):
            this: dict[str, float] = {}
            this["json"], actions = timed(json_walk_responses, *payloads)
            this["cli"] = run_cli(archive, segments, core)
            this["in"], rows = run_in_process(archive, segments)
            if rows.get("actions", 0) != actions:
                raise RuntimeError(f"json.loads walked {actions} actions, decode made {rows}")
            this["jobs1"] = run_cli(archive, segments, cpus, jobs=1)
            this["jobs2"] = run_cli(archive, segments, cpus, jobs=2)
            for name, seconds in this.items():
                best[name] = min(seconds, best.get(name, float("inf")))
            print(
                f"run {run} actions/s  json.loads {actions / this['json']:>9,.0f}  "
                f"replica decode {actions / this['cli']:>9,.0f}"
            )
        began = time.perf_counter()
        jobs_archive = Path(tmp) / "mainnet-jobs"
        jobs_segments = build_mainnet(jobs_archive, jobs_blocks)
        print(
            f"{jobs_blocks:,} blocks in {jobs_segments} segments for --jobs, built in "
            f"{time.perf_counter() - began:.1f} s"
        )
        for run in range(1, JOBS_RUNS + 1):
            for name, jobs in (("day1", 1), ("day2", 2)):
                seconds = run_cli(jobs_archive, jobs_segments, cpus, jobs=jobs)
                best[name] = min(seconds, best.get(name, float("inf")))
            print(f"run {run} --jobs 2/--jobs 1 {best['day1'] / best['day2']:.3f} (best so far)")
    total = sum(rows.values())
    ratio = best["json"] / best["cli"]
    print(f"\n{'':<34}{'seconds':>9}{'actions/s':>12}{'rows/s':>12}{'ratio':>8}")
    for name, key in (
        ("json.loads walk, with responses", "json"),
        ("replica decode (CLI, one core)", "cli"),
        ("    decode_archive in-process", "in"),
    ):
        rows_per_s = f"{total / best[key]:>12,.0f}" if key != "json" else f"{'':>12}"
        print(
            f"{name:<34}{best[key]:>9.3f}{actions / best[key]:>12,.0f}{rows_per_s}"
            f"{best['json'] / best[key]:>8.3f}"
        )
    tables = ", ".join(f"{name} {count:,}" for name, count in sorted(rows.items()))
    print(f"{actions:,} actions, {total:,} decoded rows ({tables})")
    print(f"{verdict(ratio >= MAINNET_TARGET)} ratio mainnet decode/json.loads {ratio:.3f}")
    short = best["jobs1"] / best["jobs2"]
    print(
        f"--jobs 2/--jobs 1 on the {blocks:,} blocks {short:.3f} "
        f"({actions / best['jobs2']:,.0f} vs {actions / best['jobs1']:,.0f} actions/s; "
        "the start-up of the CLI and of the worker is a larger share)"
    )
    scaling = best["day1"] / best["day2"]
    print(
        f"{verdict(scaling >= JOBS_TARGET)} ratio --jobs 2/--jobs 1 {scaling:.3f} "
        f"(on {jobs_blocks:,} blocks, {best['day1']:.1f} s vs {best['day2']:.1f} s, "
        f"on cores {sorted(cpus) if cpus else 'unpinned'})"
    )
    return [
        ("mainnet decode/json.loads", ratio, ">=", MAINNET_TARGET, ""),
        ("mainnet --jobs 2/--jobs 1", scaling, ">=", JOBS_TARGET, ""),
    ]


def feed(n: int, core: int | None, profile_it: bool) -> list[tuple]:
    """The fixture feed's protobuf commands and small node blocks; returns the measures."""
    m = max(1, round(n * NODE_SHARE))
    began = time.perf_counter()
    check_hand_columns()

    with tempfile.TemporaryDirectory(prefix="replica-bench-decode-") as tmp:
        pb_archive, node_archive, empty = (Path(tmp) / d for d in ("pb", "node", "empty"))
        pb_segments = build_archive(pb_archive, n, 11, lambda rng, ts, i: protobuf_command(rng, ts))
        node_segments = build_archive(
            node_archive, m, 13, lambda rng, ts, i: node_block(rng, ts, FIRST_ROUND + i)
        )
        ArchiveLayout(empty).raw_dir.mkdir(parents=True)
        pb = read_archive(pb_archive)
        node = read_archive(node_archive)
        pb_bytes, node_bytes = sum(map(len, pb[2])), sum(map(len, node[2]))
        print(
            f"{n:,} protobuf commands ({pb_bytes / n:.0f} B each) in {pb_segments} segments, "
            f"{m:,} node blocks ({node_bytes / m:.0f} B each) in {node_segments} segments, "
            f"built in {time.perf_counter() - began:.1f} s"
        )

        best: dict[str, float] = {}
        for run in range(1, RUNS + 1):
            this: dict[str, float] = {}
            this["a"], _ = timed(bare_parse, *pb)
            this["b"], hand_rows = timed(hand_written, *pb)
            this["c"] = run_cli(pb_archive, pb_segments, core)
            this["c_in"], pb_rows = run_in_process(pb_archive, pb_segments)
            if hand_rows != pb_rows:
                raise RuntimeError(f"(b) made rows {hand_rows}, replica decode {pb_rows}")
            this["json"], actions = timed(json_walk, *node)
            this["node"] = run_cli(node_archive, node_segments, core)
            this["node_in"], node_rows = run_in_process(node_archive, node_segments)
            if node_rows.get("actions", 0) + node_rows.get("undecoded", 0) != actions:
                raise RuntimeError(f"json.loads walked {actions} actions, decode made {node_rows}")
            this["startup"] = run_cli(empty, 0, core)
            for name, seconds in this.items():
                best[name] = min(seconds, best.get(name, float("inf")))
            print(
                f"run {run} cmds/s  (a) {n / this['a']:>9,.0f}  (b) {n / this['b']:>8,.0f}  "
                f"(c) {n / this['c']:>7,.0f}  json.loads {m / this['json']:>7,.0f}  "
                f"node {m / this['node']:>6,.0f}"
            )
        profile = profile_decode(pb_archive) if profile_it else None

    pb_ratio = best["b"] / best["c"]
    node_ratio = best["json"] / best["node"]
    target = f">= {TARGET} of (b)"
    rows = [
        (f"protobuf, {sum(pb_rows.values()):,} decoded rows", n, "", "", ""),
        ("(a) FromString loop", n, best["a"], best["b"] / best["a"], ""),
        ("(b) hand-written loop", n, best["b"], 1.0, "baseline"),
        ("(c) replica decode (CLI)", n, best["c"], pb_ratio, target),
        ("    decode_archive in-process", n, best["c_in"], best["b"] / best["c_in"], ""),
        (f"node JSON, {sum(node_rows.values()):,} decoded rows", m, "", "", ""),
        ("json.loads walk", m, best["json"], 1.0, "baseline"),
        ("replica decode (CLI)", m, best["node"], node_ratio, f">= {TARGET} of json.loads"),
        ("    decode_archive in-process", m, best["node_in"], best["json"] / best["node_in"], ""),
    ]
    print()
    print(f"{'':<32}{'commands':>10}{'seconds':>10}{'cmds/s':>12}{'ratio':>8}   target")
    for name, count, seconds, ratio, note in rows:
        if seconds == "":
            print(f"{name} from {count:,} payloads")
            continue
        print(
            f"{name:<32}{count:>10,}{seconds:>10.3f}{count / seconds:>12,.0f}{ratio:>8.3f}   "
            f"{note}".rstrip()
        )
    print(f"{'replica decode, empty archive':<32}{'':>10}{best['startup']:>10.3f}   start-up alone")
    print(f"ratio (b)/(a) hand-written/FromString {best['a'] / best['b']:.3f}")
    print(f"ratio (c)/(a) decode/FromString {best['a'] / best['c']:.3f}")
    print(f"{verdict(pb_ratio >= TARGET)} ratio protobuf decode/hand-written {pb_ratio:.3f}")
    print(f"{verdict(node_ratio >= TARGET)} ratio node decode/json.loads {node_ratio:.3f}")
    print(f"total {time.perf_counter() - began:.1f} s")
    if profile is not None:
        print()
        print("cProfile of decode_archive over the protobuf archive, top 25 by tottime:")
        print(profile)
    return [
        ("protobuf decode/hand-written", pb_ratio, ">=", TARGET, ""),
        ("node decode/json.loads", node_ratio, ">=", TARGET, ""),
    ]


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--commands",
        type=int,
        default=200_000,
        metavar="N",
        help="protobuf commands (default 200,000; 0: none); node blocks are 15%% of that",
    )
    parser.add_argument(
        "--blocks",
        type=int,
        default=200,
        metavar="N",
        help="mainnet-shaped node blocks of 1,000 actions each (default 200; 0: none)",
    )
    parser.add_argument(
        "--jobs-blocks",
        type=int,
        default=800,
        metavar="N",
        help="mainnet-shaped blocks for --jobs 2 against --jobs 1 (default 800)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of decode_archive over the protobuf archive",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the final measures here as JSON"
    )
    args = parser.parse_args()
    if args.commands < 0 or args.blocks < 0 or args.jobs_blocks < 1:
        parser.error("--commands and --blocks must not be negative, --jobs-blocks positive")
    cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    core = pin_to_one_core()
    print(f"pinned to core {core}" if core is not None else "not pinned: no sched_setaffinity")
    measures = feed(args.commands, core, args.profile) if args.commands else []
    if args.blocks:
        measures += mainnet(args.blocks, args.jobs_blocks, core, cpus)
    if args.json:
        write_json(args.json, "decode", measures)


if __name__ == "__main__":
    main()
