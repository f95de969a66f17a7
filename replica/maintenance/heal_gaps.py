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

from replica.schemas.archive import GAP_SCHEMA, ArchiveLayout, Segment
from replica.schemas.errors import ArchiveError
from replica.schemas.seqranges import subtract
from replica.schemas.storepath import parquet_file

CAUSE = "heal"

# (first seq, last seq, the segment holding them) of one run of consecutive seqs.
Run = tuple[int, int, Segment]


def record_holes(
    layout: ArchiveLayout,
    allowed: Callable[[int, int], bool],
    publish: Callable[[pa.Table, Path], None],
) -> int:
    """Record every hole between the archive's seqs that no gap record covers and that
    ``allowed(after_ts_ms, last seq of the hole)``, each file put in place by ``publish``;
    returns how many records were written."""
    rows = hole_rows(layout, layout.segments(), allowed, lambda segment: True)
    unit = f"heal-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
    by_path: dict[Path, list[dict[str, Any]]] = {}
    for row in rows:
        path = layout.unit_path(layout.gaps_dir, row["after_ts_ms"], unit)
        by_path.setdefault(path, []).append(row)
    for path, file_rows in by_path.items():
        publish(gap_table(file_rows), path)
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
            parquet = parquet_file(segment.path)
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
    """The ts_ms of ``seq`` in the segment, from the row group its statistics place it in."""
    parquet = parquet_file(segment.path)
    column = parquet.schema_arrow.get_field_index("seq")
    for index in range(parquet.num_row_groups):
        stats = parquet.metadata.row_group(index).column(column).statistics
        if stats is not None and stats.has_min_max and not stats.min <= seq <= stats.max:
            continue
        group = parquet.read_row_group(index, columns=["seq", "ts_ms"])
        at = int(np.searchsorted(group.column("seq").to_numpy(), seq))
        if at < group.num_rows and group.column("seq")[at].as_py() == seq:
            ts_ms: int = group.column("ts_ms")[at].as_py()
            return ts_ms
    raise ArchiveError(f"segment {segment.path} does not hold seq {seq}; run 'replica verify'")
