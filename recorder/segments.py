"""Publishing a sealed unit: its raw segment, gap rows and quarantined frames as Parquet.

Runs on the writer thread. Names are derived from the unit alone, and an existing file is kept,
so writing a unit again after a crash (recovery) completes it without rewriting anything.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

import pyarrow as pa
from replica.recorder.quarantine import QuarantineRow
from replica.recorder.units import ConnectionRow, RawRows, Unit
from replica.schemas.archive import (
    GAP_SCHEMA,
    QUARANTINE_SCHEMA,
    RAW_SCHEMA,
    ArchiveLayout,
    raw_write_options,
)
from replica.schemas.files import publish_parquet

_TABLE_OPTIONS = {"compression": "zstd"}
# Tables of a recording from several endpoints, beside raw/, gaps/ and quarantine/.
ARRIVALS_DIR = "arrivals"
CONNECTIONS_DIR = "connections"
ARRIVALS_SCHEMA = pa.schema(
    [("seq", pa.int64()), ("endpoint", pa.string()), ("recv_ts_us", pa.int64())]
)
CONNECTIONS_SCHEMA = pa.schema(
    [
        ("endpoint", pa.string()),
        ("connected_ts_us", pa.int64()),
        ("closed_ts_us", pa.int64()),
        ("why", pa.string()),
        ("delivered", pa.int64()),
        ("won", pa.int64()),
    ]
)
_US_PER_DAY = 86_400_000_000


def _int64(values: array[int]) -> pa.Array:
    """Wraps the session's array without copying it."""
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _binary(payloads: list[bytes]) -> pa.Array:
    offsets = array("i", accumulate(map(len, payloads), initial=0))
    data = b"".join(payloads)
    return pa.Array.from_buffers(
        pa.binary(), len(payloads), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def raw_table(rows: RawRows, metadata: dict[bytes, str]) -> pa.Table:
    columns = [
        _int64(rows.seq),
        _int64(rows.ts_ms),
        _int64(rows.ingest_ts_us),
        _int64(rows.publish_ts_us),
        _int64(rows.recv_ts_us),
        _binary(rows.raw),
    ]
    return pa.Table.from_arrays(columns, schema=RAW_SCHEMA.with_metadata(metadata))


def gap_table(unit: Unit) -> pa.Table:
    rows = unit.gaps
    return pa.Table.from_pydict(
        {
            "from_seq": [r.gap.from_seq for r in rows],
            "to_seq": [r.gap.to_seq for r in rows],
            "missing": [r.gap.missing for r in rows],
            "cause": [str(r.gap.cause) for r in rows],
            "detected_ts_us": [r.detected_ts_us for r in rows],
            "before_ts_ms": [r.gap.before_ts_ms for r in rows],
            "after_ts_ms": [r.after_ts_ms for r in rows],
        },
        schema=GAP_SCHEMA,
    )


def quarantine_table(rows: list[QuarantineRow]) -> pa.Table:
    return pa.Table.from_pydict(
        {name: [getattr(r, name) for r in rows] for name in QUARANTINE_SCHEMA.names},
        schema=QUARANTINE_SCHEMA,
    )


def arrival_tables(unit: Unit) -> Iterator[tuple[int, pa.Table]]:
    """The unit's deliveries per UTC day of arrival (a unit rarely spans midnight): the first
    ``recv_ts_us`` of each, and its rows. The endpoint column is dictionary-sized on disk."""
    names = pa.array(unit.endpoints, pa.string())
    endpoint = pa.DictionaryArray.from_arrays(
        pa.array(unit.arrival_endpoint, pa.int8()), names
    ).cast(pa.string())
    table = pa.Table.from_arrays(
        [_int64(unit.arrival_seq), endpoint, _int64(unit.arrival_recv_us)],
        schema=ARRIVALS_SCHEMA,
    )
    start, recv = 0, unit.arrival_recv_us
    while start < len(recv):
        end = start + 1
        day = recv[start] // _US_PER_DAY
        while end < len(recv) and recv[end] // _US_PER_DAY == day:
            end += 1
        yield recv[start], table.slice(start, end - start)
        start = end


def connection_table(rows: list[ConnectionRow]) -> pa.Table:
    return pa.Table.from_pylist([vars(row) for row in rows], schema=CONNECTIONS_SCHEMA)


def unit_files(
    unit: Unit, layout: ArchiveLayout, metadata: dict[bytes, str], raw: bool = True
) -> Iterator[tuple[Path, pa.Table, dict[str, Any]]]:
    """Each file a unit becomes: the raw segment first (unless ``raw`` is false: it was written
    a chunk at a time), so a reader sees data before its gaps."""
    if raw and unit.rows:
        path = layout.segment_path(unit.first_seq, unit.last_seq, unit.hour)
        table = raw_table(unit, metadata)
        yield path, table, raw_write_options(table)
    if unit.gaps:
        path = layout.unit_path(layout.gaps_dir, unit.gaps[0].after_ts_ms, unit.unit_id)
        yield path, gap_table(unit), _TABLE_OPTIONS
    by_path: dict[Path, list[QuarantineRow]] = {}
    for row in unit.quarantine.rows:
        path = layout.unit_path(layout.quarantine_dir, row.recv_ts_us // 1000, unit.unit_id)
        by_path.setdefault(path, []).append(row)
    for path, rows in by_path.items():
        yield path, quarantine_table(rows), _TABLE_OPTIONS
    for first_us, table in arrival_tables(unit) if unit.arrival_seq else ():
        name = f"{unit.unit_id}-{first_us}" if first_us != unit.arrival_recv_us[0] else unit.unit_id
        path = layout.unit_path(layout.root / ARRIVALS_DIR, first_us // 1000, name)
        yield path, table, _TABLE_OPTIONS
    if unit.connections:
        ts_ms = unit.connections[0].closed_ts_us // 1000
        path = layout.unit_path(layout.root / CONNECTIONS_DIR, ts_ms, unit.unit_id)
        yield path, connection_table(unit.connections), _TABLE_OPTIONS


def publish_unit(unit: Unit, layout: ArchiveLayout, metadata: dict[bytes, str]) -> list[Path]:
    """Publish every file of ``unit``; returns those written now (not those already there)."""
    return [
        path
        for path, table, options in unit_files(unit, layout, metadata)
        if publish_parquet(table, path, **options)
    ]
