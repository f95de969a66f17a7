"""``replica heal`` of an archive on an object store, which has no rename and no directory swap.

A day's added rows are placed as on disk (``heal_plan``) and published by the rule readers follow
on every archive (``ArchiveLayout.segments``): a segment inside a larger one of its hour is
superseded. Every file is built in a local scratch directory and uploaded to its final key,
visible only once complete (``schemas.transfer``).

- Seqs between segments become a new segment: it lies inside no other and holds no other, so
  it appears whole, as a recorder's segment does.
- Seqs inside a segment's name range cannot get a segment of their own (it would lie inside that
  segment, superseded forever), and the segment cannot be overwritten (a reader's range requests
  could mix old and new bytes). It is split in two at the first seq added inside it, each piece
  holding its rows and the added ones of its range. Both names lie strictly inside the
  segment's, so while it is listed the pieces are superseded and readers read it; deleting it
  (its decoded files first, as a compaction deletes an input) publishes both pieces at once.
- Heal records: the day's record goes up first to ``.heal/`` (outside every glob), then the rows,
  then the record to ``heals/``, and the pending copy is deleted last.

A run killed at any point is repaired by the next, before it plans: pieces still superseded are
deleted (their seqs are healed again; ``replica compact`` would delete them too), and a pending
record whose ``heals/`` copy is missing is published for those of its seqs the archive now holds
(the run added them: they were missing when it planned), then deleted. So each added seq ends
with exactly one heal record. Holes are recorded by the last pass over the archive
(``heal_gaps.record_holes``), conflicts quarantined as on disk.

A store has no lock: a recorder writing into the store spools on its own disk, where this cannot
look, so heal acts as beside a running recorder (closed days only, seqs below the archive's
last), and running one maintenance process per prefix at a time is the operator's job, as for
``compact_store``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from replica.maintenance.compact_store import retire_segment, retire_superseded
from replica.maintenance.heal import HealSummary, Policy, Publisher, heal_with
from replica.maintenance.heal_plan import heal_table, merged, plan_day, write_file
from replica.maintenance.heal_rows import ArchiveRows
from replica.maintenance.heal_sources import Source
from replica.maintenance.heal_write import DayResult
from replica.schemas.archive import DATE_FILES, ArchiveLayout, Segment, day_partition, segment_name
from replica.schemas.errors import ArchiveError
from replica.schemas.heals import heals_dir
from replica.schemas.storepath import StorePath, read_table
from replica.schemas.transfer import upload_file

PENDING_DIR = ".heal"  # heal records not yet published: hidden, so no reader's glob enters it


def heal_store(layout: ArchiveLayout, sources: list[Source]) -> HealSummary:
    """``heal`` for an archive whose root is a ``StorePath``."""
    assert isinstance(layout.root, StorePath)
    with tempfile.TemporaryDirectory(prefix="replica-heal-") as scratch:
        store = _Store(layout, Path(scratch), layout.root)
        retire_superseded(layout, None)
        finished = store.settle()
        policy = Policy.of(layout, True, {})
        return heal_with(layout, sources, policy, Publisher(store.write_day, store.put), finished)


class _Store:
    """Writes a heal's files in ``scratch`` with the local code, and uploads them."""

    def __init__(self, layout: ArchiveLayout, scratch: Path, root: StorePath) -> None:
        self.layout, self.scratch, self.root = layout, scratch, root

    def put(self, table: pa.Table, path: Path) -> None:
        """``table`` to the key ``path`` (under the archive's root)."""
        assert isinstance(path, StorePath)
        relative = path.key[len(self.root.key) :].lstrip("/")
        built = self.scratch / relative
        write_file(table, built)
        upload_file(built, self.root / relative)
        built.unlink()

    def write_day(
        self,
        layout: ArchiveLayout,
        day: date,
        added: pa.Table,
        segments: list[Segment],
        metadata: dict[bytes, bytes],
        source: str,
        may_record: Callable[[int, int], bool],
    ) -> DayResult:
        """``heal_write.write_day`` on a store; the holes are left to the last pass."""
        plan = plan_day(added, segments, metadata)
        result = DayResult(warnings=plan.warnings)
        if not plan.rewrites and not plan.new:
            return result
        stamp = time.time_ns() // 1000
        unit = f"{day_partition(day)}/heal-{stamp}-{os.getpid()}.parquet"
        record = heal_table(plan.healed, source, stamp)
        pending = layout.root / PENDING_DIR / unit
        self.put(record, pending)
        for relative, rows in plan.new:
            self.put(rows, layout.raw_dir / day_partition(day) / relative)
            result.written += 1
        for segment, rows in plan.rewrites.items():
            for name, piece in split(segment, rows):
                self.put(piece, segment.path.parent / name)
            retire_segment(layout, segment)
            result.rewritten += 1
        self.put(record, heals_dir(self.layout) / unit)
        pending.unlink(missing_ok=True)
        result.added = len(plan.healed)
        return result

    def settle(self) -> list[str]:
        """Publish what killed runs left in ``.heal/``: the days they were writing."""
        days = []
        for pending in (self.root / PENDING_DIR).glob(DATE_FILES):
            assert isinstance(pending, StorePath)
            unit = f"{pending.parent.name}/{pending.name}"
            final = heals_dir(self.layout) / unit
            if not final.exists():
                record = read_table(pending)
                present = _present(self.layout, record)
                if len(present):
                    source, stamp = record["source"][0].as_py(), record["healed_ts_us"][0].as_py()
                    self.put(heal_table(present, source, stamp), final)
            pending.unlink(missing_ok=True)
            days.append(pending.parent.name.removeprefix("date="))
        return days


def split(segment: Segment, rows: pa.Table) -> list[tuple[str, pa.Table]]:
    """The segment with ``rows`` (inside its name range) added, as two pieces named strictly
    inside its range: cut at the first added seq, each piece (``name``, rows)."""
    table = merged(segment, rows)
    cut = int(np.searchsorted(table.column("seq").to_numpy(), rows.column("seq")[0].as_py()))
    pieces = []
    for part in (table.slice(0, cut), table.slice(cut)):
        seqs = part.column("seq")
        if not part.num_rows or (seqs[0].as_py(), seqs[-1].as_py()) == (
            segment.first_seq,
            segment.last_seq,
        ):
            raise ArchiveError(
                f"segment {segment.path} does not hold the seqs its name says; run 'replica "
                "verify' on the archive"
            )
        pieces.append((segment_name(seqs[0].as_py(), seqs[-1].as_py()), part))
    return pieces


def _present(layout: ArchiveLayout, record: pa.Table) -> np.ndarray:
    """The seqs of the heal ``record`` that the archive's readers see."""
    rows = ArchiveRows(layout.segments())
    found = [np.empty(0, dtype=np.int64)]
    for lo, hi in zip(record["from_seq"].to_pylist(), record["to_seq"].to_pylist(), strict=True):
        found.append(rows.rows(lo, hi).column("seq").to_numpy())
    return np.sort(np.concatenate(found))
