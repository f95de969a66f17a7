"""An archive with something in every section of ``replica report``, written directly.

The bundled feed (3,000 commands across midnight, seqs 482911500-482911504 missing), then the
golden decoder payloads ten minutes later after 1,000 more missing seqs (so ``decode`` gives
node actions and undecoded rows), gap records of two causes for the two holes, quarantined
frames of two kinds, and optionally arrivals at two endpoints as a multi-endpoint recorder
would write them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.decoder.archive import decode_archive
from replica.schemas.archive import GAP_SCHEMA, QUARANTINE_SCHEMA, ArchiveLayout, date_partition
from replica.schemas.files import publish_parquet

from tests.rawarchive import feed_rows, write_archive

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "payloads.jsonl"
ARRIVALS_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("recv_ts_us", pa.int64(), nullable=False),
    ]
)


def command_rows() -> list[dict]:
    """The feed's rows, then the golden payloads' after a hole of 1,000 seqs."""
    rows = feed_rows()
    last = rows[-1]
    for i, line in enumerate(GOLDEN.read_text().splitlines()):
        ts_ms = last["ts_ms"] + 600_000 + 1_500 * i
        rows.append(
            {
                "seq": last["seq"] + 1_001 + i,
                "ts_ms": ts_ms,
                "ingest_ts_us": ts_ms * 1000 + 200 + 7 * i,
                "publish_ts_us": ts_ms * 1000 + 260 + 9 * i,
                "recv_ts_us": ts_ms * 1000 + 900 - 13 * i,
                "raw": bytes.fromhex(json.loads(line)["raw_hex"]),
            }
        )
    return rows


def gap_rows(rows: list[dict]) -> list[dict]:
    """A record for each hole in ``rows``' seqs: the first a jump, the second a reconnect."""
    gaps = []
    for before, after in itertools.pairwise(rows):
        if after["seq"] > before["seq"] + 1:
            gaps.append(
                {
                    "from_seq": before["seq"] + 1,
                    "to_seq": after["seq"] - 1,
                    "missing": after["seq"] - before["seq"] - 1,
                    "cause": "jump" if not gaps else "reconnect",
                    "detected_ts_us": after["recv_ts_us"],
                    "before_ts_ms": before["ts_ms"],
                    "after_ts_ms": after["ts_ms"],
                }
            )
    return gaps


def quarantine_rows(rows: list[dict]) -> list[dict]:
    """Three bad_hex frames in one minute and two missing_field frames in a later one."""
    frames = []
    for i, (kind, at) in enumerate([("bad_hex", 100)] * 3 + [("missing_field", 2_500)] * 2):
        frame = '{"type":"cmd","seq":1}'
        frames.append(
            {"recv_ts_us": rows[at]["recv_ts_us"] + i, "kind": kind, "reason": "fixture",
             "seq": None, "frame": frame, "frame_bytes": len(frame)}
        )  # fmt: skip
    return frames


def arrival_rows(rows: list[dict]) -> list[dict]:
    """Every command at endpoint "a" when recorded; at "b" 40 us earlier for every third seq,
    at the same microsecond for every seventh, 60 us later otherwise, and not at all for every
    eleventh."""
    arrivals = []
    for row in rows:
        seq, recv = row["seq"], row["recv_ts_us"]
        arrivals.append({"seq": seq, "endpoint": "a", "recv_ts_us": recv})
        if seq % 11 == 0:
            continue
        offset = 0 if seq % 7 == 0 else -40 if seq % 3 == 0 else 60
        arrivals.append({"seq": seq, "endpoint": "b", "recv_ts_us": recv + offset})
    return arrivals


def write_report_archive(root: Path, endpoints: bool = True) -> dict[str, list[dict]]:
    """Write the archive under ``root`` and decode it; returns what went in, by table."""
    rows = command_rows()
    write_archive(root, rows, per_segment=500)
    layout = ArchiveLayout(root)
    gaps = gap_rows(rows)
    for i, gap in enumerate(gaps):
        path = layout.unit_path(layout.gaps_dir, gap["after_ts_ms"], f"unit-{i}")
        publish_parquet(pa.Table.from_pylist([gap], schema=GAP_SCHEMA), path)
    quarantine = quarantine_rows(rows)
    for i, frame in enumerate(quarantine):
        path = layout.unit_path(layout.quarantine_dir, frame["recv_ts_us"] // 1000, f"unit-q{i}")
        publish_parquet(pa.Table.from_pylist([frame], schema=QUARANTINE_SCHEMA), path)
    decode_archive(root)
    written = {"raw_cmds": rows, "gaps": gaps, "quarantine": quarantine, "arrivals": []}
    if endpoints:
        written["arrivals"] = arrivals = arrival_rows(rows)
        by_date: dict[str, list[dict]] = {}
        for arrival in arrivals:
            by_date.setdefault(date_partition(arrival["recv_ts_us"] // 1000), []).append(arrival)
        for partition, day_rows in by_date.items():
            path = root / "arrivals" / partition / "part-0.parquet"
            path.parent.mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist(day_rows, schema=ARRIVALS_SCHEMA), path)
    return written
