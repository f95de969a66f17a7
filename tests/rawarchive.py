"""Raw archives written directly, as the recorder would seal them, for tests of later stages."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from replica.schemas.archive import RAW_SCHEMA, RAW_WRITE_OPTIONS, ArchiveLayout, Segment, hour_of
from replica.schemas.files import publish_parquet

from replica.demo import DEMO_FEED


def feed_rows() -> list[dict]:
    """The bundled fixture feed as raw rows."""
    rows = []
    for line in DEMO_FEED.read_text().splitlines():
        frame = json.loads(line)
        rows.append(
            {
                "seq": frame["seq"],
                "ts_ms": frame["ts_ms"],
                "ingest_ts_us": frame["ingest_ts_us"],
                "publish_ts_us": frame["publish_ts_us"],
                "recv_ts_us": frame["publish_ts_us"] + 150,
                "raw": bytes.fromhex(frame["raw_hex"]),
            }
        )
    return rows


def payload_rows(payloads: list[bytes], start_seq: int = 1000, start_ts_ms: int = 0) -> list[dict]:
    """Raw rows around given payloads, 10 ms apart."""
    ts = start_ts_ms or 1_795_219_080_000
    return [
        {
            "seq": start_seq + i,
            "ts_ms": ts + 10 * i,
            "ingest_ts_us": (ts + 10 * i) * 1000 + 300,
            "publish_ts_us": (ts + 10 * i) * 1000 + 320,
            "recv_ts_us": (ts + 10 * i) * 1000 + 500,
            "raw": payload,
        }
        for i, payload in enumerate(payloads)
    ]


def write_segment(root: Path, rows: list[dict], row_group_rows: int | None = None) -> Segment:
    """One raw segment holding ``rows`` (sorted, one UTC hour), written and named as the
    recorder writes and names it, with smaller row groups if asked."""
    table = pa.Table.from_pylist(rows, schema=RAW_SCHEMA)
    options = dict(RAW_WRITE_OPTIONS)
    if row_group_rows is not None:
        options["row_group_size"] = row_group_rows
    path = ArchiveLayout(root).segment_path(
        rows[0]["seq"], rows[-1]["seq"], hour_of(rows[0]["ts_ms"])
    )
    publish_parquet(table, path, **options)
    return Segment(path, rows[0]["seq"], rows[-1]["seq"])


def write_archive(
    root: Path, rows: list[dict], per_segment: int = 1000, row_group_rows: int | None = None
) -> list[Segment]:
    """Segments of at most ``per_segment`` rows, split at UTC hours like the recorder's."""
    segments, chunk = [], []
    for row in rows:
        if chunk and (
            len(chunk) == per_segment or hour_of(row["ts_ms"]) != hour_of(chunk[0]["ts_ms"])
        ):
            segments.append(write_segment(root, chunk, row_group_rows))
            chunk = []
        chunk.append(row)
    if chunk:
        segments.append(write_segment(root, chunk, row_group_rows))
    return segments
