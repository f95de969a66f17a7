"""What a heal writes for one day, wherever the archive is: which of the added seqs go into an
existing segment and which become new segments, and the bytes of every file it writes.

Seqs inside an existing segment's name range belong with that segment (segment names never
overlap, so they can go nowhere else), and only within its hour; the rest become new segments,
one per run that stays in one UTC hour and between the same two existing segments. How the day
is then published is the archive's own: swapped in whole on disk (``heal_write``), by the
superseding rule on a store (``heal_store``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replica.maintenance.compact_raw import TARGET_ROWS
from replica.schemas.archive import (
    MS_PER_HOUR,
    RAW_SCHEMA,
    Segment,
    hour_of,
    hour_partition,
    raw_write_options,
    segment_name,
)
from replica.schemas.files import PAGE_CHECKSUMS
from replica.schemas.heals import HEAL_SCHEMA
from replica.schemas.storepath import read_table


@dataclass
class DayPlan:
    """The added rows of one day, placed: ``rewrites`` maps an existing segment to the rows
    inside its name range, ``new`` holds each new segment as (``hour=HH/<name>``, rows)."""

    rewrites: dict[Segment, pa.Table] = field(default_factory=dict)
    new: list[tuple[str, pa.Table]] = field(default_factory=list)
    healed: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    warnings: list[str] = field(default_factory=list)


def plan_day(added: pa.Table, segments: list[Segment], metadata: dict[bytes, bytes]) -> DayPlan:
    """Where the rows ``added`` (of one day, sorted by seq, none the archive holds) go among
    ``segments``; new segments carry ``metadata``."""
    plan = DayPlan()
    seqs = added.column("seq").to_numpy()
    firsts = np.array([s.first_seq for s in segments], dtype=np.int64)
    index = np.searchsorted(firsts, seqs, side="right") - 1  # the segment at or before each
    inside: dict[int, list[int]] = {}
    outside = []
    for position, seq in enumerate(seqs.tolist()):
        at = int(index[position])
        if at >= 0 and segments[at].last_seq >= seq:
            inside.setdefault(at, []).append(position)
        else:
            outside.append(position)
    hours = added.column("ts_ms").to_numpy() // MS_PER_HOUR
    kept: list[int] = []
    for at, positions in inside.items():
        fits = [p for p in positions if hours[p] == segments[at].hour]
        if len(fits) < len(positions):
            plan.warnings.append(
                f"{len(positions) - len(fits)} seqs inside {segments[at].path} have times "
                "outside its hour; not healed (a segment is only rewritten within its hour)"
            )
        if fits:
            plan.rewrites[segments[at]] = added.take(fits)
            kept += fits
    for run in _runs(hours, outside, index):
        rows = added.take(run).replace_schema_metadata(metadata)
        first, last = rows.column("seq")[0].as_py(), rows.column("seq")[-1].as_py()
        hour_dir = hour_partition(hour_of(rows.column("ts_ms")[0].as_py()))[1]
        plan.new.append((f"{hour_dir}/{segment_name(first, last)}", rows))
        kept += run
    plan.healed = np.sort(seqs[kept])
    return plan


def _runs(hours: np.ndarray, positions: list[int], index: np.ndarray) -> list[list[int]]:
    """``positions`` cut into new segments: a run ends at an hour boundary, where an existing
    segment lies between two seqs (their segment-at-or-before differs), or at TARGET_ROWS."""
    runs: list[list[int]] = []
    for position in positions:
        if runs:
            last = runs[-1][-1]
            same = hours[last] == hours[position] and index[last] == index[position]
            if same and len(runs[-1]) < TARGET_ROWS:
                runs[-1].append(position)
                continue
        runs.append([position])
    return runs


def merged(segment: Segment, rows: pa.Table) -> pa.Table:
    """The segment's rows and ``rows`` in seq order, with the segment's own metadata."""
    old = read_table(segment.path)
    table = pa.concat_tables([old.cast(RAW_SCHEMA), rows.cast(RAW_SCHEMA)]).sort_by("seq")
    return table.replace_schema_metadata(old.schema.metadata)


def write_file(table: pa.Table, path: Path) -> None:
    """A new local file of a heal (raw, heal or gap table), fsynced: a journal may vouch for
    it. The same bytes wherever it is then published."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = raw_write_options(table) if table.schema.names == RAW_SCHEMA.names else {}
    with open(path, "xb") as sink:
        pq.write_table(table, sink, **({"compression": "zstd"} | options), **PAGE_CHECKSUMS)
        sink.flush()
        os.fsync(sink.fileno())


def heal_table(healed: np.ndarray, source: str, stamp: int) -> pa.Table:
    """One heal record per run of consecutive healed seqs (sorted)."""
    breaks = np.flatnonzero(np.diff(healed) != 1) + 1
    starts = np.concatenate([[0], breaks]).astype(np.int64)
    ends = np.concatenate([breaks, [len(healed)]]).astype(np.int64) - 1
    first, last = healed[starts], healed[ends]
    return pa.Table.from_pydict(
        {
            "from_seq": first,
            "to_seq": last,
            "healed": last - first + 1,
            "source": [source] * len(first),
            "healed_ts_us": [stamp] * len(first),
        },
        schema=HEAL_SCHEMA,
    )
