"""Bringing an archive back to a consistent state before recording resumes.

Temporary files of an interrupted write are removed, leftover spools are replayed into the
units they held, and the seq tracker resumes after the last archived seq.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.recorder.segments import publish_unit
from replica.recorder.seq import Cause, TrackerState
from replica.recorder.session import FeedSession, RecentPayloads
from replica.recorder.spool import leftover_spools, read_spool
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError

log = logging.getLogger(__name__)


@dataclass
class Recovery:
    spools: int = 0
    frames: int = 0
    torn: int = 0
    files: list[Path] = field(default_factory=list)


def remove_temporary_files(layout: ArchiveLayout) -> None:
    for path in layout.temporary_files():
        log.info("removing %s, left by an interrupted write", path)
        path.unlink(missing_ok=True)


def archived_tail(layout: ArchiveLayout, recent: RecentPayloads) -> TrackerState:
    """The state after the last archived command; its payloads seed duplicate checks."""
    segments = layout.segments()
    if not segments:
        return TrackerState()
    last = segments[-1]
    try:
        table = _last_rows(last.path, recent.size)
    except Exception as exc:
        raise ArchiveError(
            f"cannot read the last segment {last.path}: {exc}; run 'replica verify'"
        ) from exc
    seqs = table.column("seq").to_pylist()
    for seq, raw in zip(seqs, table.column("raw").to_pylist(), strict=True):
        recent.remember(seq, raw)
    return TrackerState(seqs[-1], table.column("ts_ms")[-1].as_py(), Cause.RESTART)


def _last_rows(path: Path, rows: int) -> pa.Table:
    """At least the last ``rows`` rows, reading only the row groups that hold them."""
    parquet = pq.ParquetFile(path)
    first, held = parquet.num_row_groups, 0
    while first > 0 and held < rows:
        first -= 1
        held += parquet.metadata.row_group(first).num_rows
    return parquet.read_row_groups(range(first, parquet.num_row_groups), ["seq", "ts_ms", "raw"])


def recover_spools(
    layout: ArchiveLayout, recent: RecentPayloads, metadata: dict[bytes, str]
) -> Recovery:
    """Replay every leftover spool file from its header state and publish its unit."""
    recovery = Recovery()
    for path in leftover_spools(layout.spool_dir):
        contents = read_spool(path)
        if not contents.complete:
            recovery.torn += 1
            log.warning(
                "%s ends in a torn chunk (a crash mid-write); keeping what precedes it", path
            )
        if contents.header is not None:
            header = contents.header
            session = FeedSession(
                TrackerState.from_json(header["state"]),
                now_us=header["opened_us"],
                recent=recent,
                unit_id=header["unit"],
            )
            session.replay(contents.records)
            session.seal(header["opened_us"])
            for unit in session.take_sealed():
                recovery.files += publish_unit(unit, layout, metadata)
            recovery.frames += session.stats.frames
        recovery.spools += 1
        path.unlink()
    return recovery
