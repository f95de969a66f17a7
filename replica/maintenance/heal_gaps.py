"""Gap records for the seqs neither an archive nor its heal sources hold.

A heal that extends an archive past its ends, or copies a source's segment with the source's own
holes in it, leaves seqs missing that no gap record names. Each such hole gets a record, cause
``heal``, as an import records its holes: staged with the day it ends before (``heal_write``),
so it appears with the seqs around it. A last pass over the whole archive (``record_holes``)
records the rest (a hole before another day), and those a killed run left; a second run writes
nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replica.schemas.archive import GAP_SCHEMA, ArchiveLayout, Segment
from replica.schemas.errors import ArchiveError
from replica.schemas.files import publish_parquet
from replica.schemas.seqranges import subtract

CAUSE = "heal"

# (first seq, last seq, the segment holding them) of one run of consecutive seqs.
Run = tuple[int, int, Segment]


def record_holes(layout: ArchiveLayout, allowed: Callable[[int, int], bool]) -> int:
    """Record every hole between the archive's seqs that no gap record covers and that
    ``allowed(after_ts_ms, last seq of the hole)``; returns how many records were written."""
    rows = hole_rows(layout, layout.segments(), allowed, lambda segment: True)
    unit = f"heal-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
    by_path: dict[Path, list[dict[str, Any]]] = {}
    for row in rows:
        path = layout.unit_path(layout.gaps_dir, row["after_ts_ms"], unit)
        by_path.setdefault(path, []).append(row)
    for path, file_rows in by_path.items():
        publish_parquet(gap_table(file_rows), path, compression="zstd")
    return len(rows)


def hole_rows(
    layout: ArchiveLayout,
    segments: list[Segment],
    allowed: Callable[[int, int], bool],
    before: Callable[[Segment], bool],
) -> list[dict[str, Any]]:
    """Gap records for the holes between the seqs of ``segments`` (sorted, disjoint) that no
    gap record of the archive covers, ``allowed`` lets record, and that lie just before a run
    of a segment ``before`` accepts."""
    covered = sorted((g["from_seq"], g["to_seq"]) for g in layout.gap_rows(["from_seq", "to_seq"]))
    detected = time.time_ns() // 1000
    rows = []
    for previous, following in pairwise(_runs(segments)):
        hole = (previous[1] + 1, following[0] - 1)
        if hole[0] > hole[1] or not before(following[2]):
            continue
        for lo, hi in subtract([hole], covered):
            after_ts_ms = _ts_ms(following[2], following[0])
            if not allowed(after_ts_ms, hi):
                continue
            rows.append(
                {
                    "from_seq": lo,
                    "to_seq": hi,
                    "missing": hi - lo + 1,
                    "cause": CAUSE,
                    "detected_ts_us": detected,
                    "before_ts_ms": _ts_ms(previous[2], previous[1]),
                    "after_ts_ms": after_ts_ms,
                }
            )
    return rows


def gap_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=GAP_SCHEMA)


def _runs(segments: list[Segment]) -> list[Run]:
    """Runs of consecutive seqs, in order: a segment without holes is one run, read from its
    footer; only a segment with holes has its seqs read."""
    runs: list[Run] = []
    for segment in segments:
        try:
            parquet = pq.ParquetFile(segment.path)
            if parquet.metadata.num_rows == segment.last_seq - segment.first_seq + 1:
                runs.append((segment.first_seq, segment.last_seq, segment))
                continue
            seqs = parquet.read(columns=["seq"]).column("seq").to_numpy()
        except (OSError, pa.ArrowException) as exc:
            raise ArchiveError(f"cannot read segment {segment.path}: {exc}") from exc
        breaks = np.flatnonzero(np.diff(seqs) != 1) + 1
        for part in np.split(seqs, breaks):
            runs.append((int(part[0]), int(part[-1]), segment))
    return runs


def _ts_ms(segment: Segment, seq: int) -> int:
    table = pq.read_table(segment.path, columns=["seq", "ts_ms"], filters=[("seq", "=", seq)])
    return table.column("ts_ms")[0].as_py()
