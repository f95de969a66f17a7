"""``replica heal``: an archive's missing seqs filled from other archives of the same feed, or
from a node's replica_cmds files for an archive of node block heights.

Every seq a source holds and the archive lacks is added with its original timestamps; a seq
both hold is compared byte for byte, and a difference is a conflict: the source's command is
quarantined (kind ``conflict``) and the archive keeps its own. Days are written by
``heal_write`` (rebuilt aside and swapped in, journalled like a compaction), and each added run
of seqs gets a heal record, so gap records stay the history of what was missed.

It takes turns with compact, decode and import-node (the maintenance lock). Beside a running
recorder (which holds ``.lock``) it fills only closed days and only seqs below the archive's
last, which no recorder writes again; with no recorder it holds ``.lock`` itself, so none starts
meanwhile, and fills everything. Running it again with the same sources changes nothing.

An archive on an object store is healed by the same code, published by ``heal_store``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replica.maintenance.compact_raw import spooled_days, why_open
from replica.maintenance.heal_gaps import record_holes
from replica.maintenance.heal_rows import ArchiveRows, Pending
from replica.maintenance.heal_sources import ArchiveSource, Source, open_source
from replica.maintenance.heal_write import DayResult, write_day
from replica.maintenance.staging import finish_interrupted
from replica.recorder.quarantine import FRAME_TEXT_CAP
from replica.replay.records import ReplayRecord
from replica.schemas.archive import QUARANTINE_SCHEMA, ArchiveLayout, Segment
from replica.schemas.errors import ArchiveError, ArchiveLocked, UsageError
from replica.schemas.files import publish_parquet
from replica.schemas.frames import command_frame
from replica.schemas.lock import ArchiveLock, maintenance_lock
from replica.schemas.seqspace import meaning, recorded_kind
from replica.schemas.storepath import StorePath, read_table

TASK = "replica heal"
# Rows held before the days they belong to are written: bounds memory on a large heal.
PENDING_ROWS = 1_000_000
MS_PER_DAY = 86_400_000


@dataclass
class HealSummary:
    sources: list[str] = field(default_factory=list)
    added: int = 0  # seqs added
    compared: int = 0  # seqs both held, compared byte for byte
    segments_written: int = 0
    segments_rewritten: int = 0
    gaps: int = 0  # gap records written for seqs neither the archive nor a source held
    conflicts: list[str] = field(default_factory=list)  # one line per differing seq
    warnings: list[str] = field(default_factory=list)  # what was left alone, and why
    finished: list[str] = field(default_factory=list)  # days an interrupted run left, finished


# Writes one day's added rows (``heal_write.write_day``'s arguments).
WriteDay: TypeAlias = Callable[
    [
        ArchiveLayout,
        date,
        pa.Table,
        list[Segment],
        dict[bytes, bytes],
        str,
        Callable[[int, int], bool],
    ],
    DayResult,
]


@dataclass(frozen=True)
class Publisher:
    """How a heal puts what it writes where readers look: a day's raw rows and heal records
    (``write_day``), and a gap or quarantine file (``publish``). On disk by directory swap and
    rename; on a store by its own rule (``heal_store``)."""

    write_day: WriteDay
    publish: Callable[[pa.Table, Path], None]


def _publish_local(table: pa.Table, path: Path) -> None:
    publish_parquet(table, path, compression="zstd")


@dataclass(frozen=True)
class Policy:
    """What may be added while a recorder may be running (``live``): closed days only, and
    seqs no higher than the archive's last."""

    live: bool
    last_seq: int | None
    now: datetime
    spooled: dict[date, str]

    @classmethod
    def of(cls, layout: ArchiveLayout, live: bool, spooled: dict[date, str]) -> Policy:
        segments = layout.segments()
        last = segments[-1].last_seq if segments else None
        return cls(live, last, datetime.now(UTC), spooled)

    def why_not(self, day: date, seq: int) -> str | None:
        if not self.live:
            return None
        if self.last_seq is None or seq > self.last_seq:
            return "above the archive's last seq, which a running recorder writes after"
        reason = why_open(day, self.now, self.spooled)
        return None if reason is None else f"a running recorder may still write {day}: {reason}"

    def sift(self, seqs: np.ndarray, ts_ms: np.ndarray, skipped: dict[str, int]) -> np.ndarray:
        """Which of these rows may be added; ``skipped`` counts the others by reason."""
        allowed = np.ones(len(seqs), dtype=bool)
        if not self.live:
            return allowed
        above = seqs > (-1 if self.last_seq is None else self.last_seq)
        keys = ts_ms // MS_PER_DAY * 2 + above  # one decision per day, above the last or not
        for key in np.unique(keys).tolist():
            rows = keys == key
            why = self.why_not(_day(key // 2 * MS_PER_DAY), int(seqs[rows][0]))
            if why is not None:
                allowed[rows] = False
                skipped[why] = skipped.get(why, 0) + int(rows.sum())
        return allowed

    def may_record(self, after_ts_ms: int, last_seq: int) -> bool:
        """Whether a hole ending at ``last_seq`` before a command at ``after_ts_ms`` may get
        a gap record: not where a running recorder is about to write its own."""
        return self.why_not(_day(after_ts_ms), last_seq) is None


def heal(
    archive: str | os.PathLike[str],
    sources: Iterable[str | os.PathLike[str]],
    endpoint_url: str | None = None,
) -> HealSummary:
    """Fill the archive at ``archive`` (a directory, or ``s3://...``: see ``heal_store``) from
    ``sources`` (archives, local or ``s3://...``, or node files for a node archive), stores at
    ``endpoint_url`` if given. Raises ``UsageError`` for a source of another seq space,
    ``ArchiveLocked`` while compact, decode or import-node runs on a local archive."""
    layout = ArchiveLayout.open(archive, endpoint_url)
    if not layout.raw_dir.is_dir():
        raise ArchiveError(f"{layout.root} is not an archive: it has no raw/ directory")
    opened = [open_source(path, endpoint_url) for path in sources]
    if isinstance(layout.root, StorePath):
        from replica.maintenance.heal_store import heal_store

        return heal_store(layout, opened)
    with maintenance_lock(layout, TASK):
        recorder = ArchiveLock(layout.lock_path, TASK)
        try:
            recorder.acquire()
            live = False
        except ArchiveLocked:
            live = True  # a recorder runs: heal around it
        try:
            finished = finish_interrupted(layout)
            policy = Policy.of(layout, live, spooled_days(layout) if live else {})
            local = Publisher(write_day, _publish_local)
            return heal_with(layout, opened, policy, local, finished)
        finally:
            recorder.release()


def heal_with(
    layout: ArchiveLayout,
    sources: list[Source],
    policy: Policy,
    publisher: Publisher,
    finished: list[str],
) -> HealSummary:
    """The heal of ``layout`` from ``sources`` under ``policy``, written by ``publisher``;
    ``finished`` names what the caller completed of an interrupted run."""
    summary = HealSummary(finished=finished)
    kind = recorded_kind(layout)
    if kind is None:
        raise ArchiveError(
            f"{layout.root} holds no commands yet, so what its seqs mean is unknown; heal "
            "fills an archive that replica record or replica import-node has written"
        )
    for source in sources:
        if isinstance(source, ArchiveSource) and source.root.resolve() == layout.root.resolve():
            raise UsageError(f"source {source.name} is the archive itself")
        other = source.kind()
        if other is not None and other != kind:
            raise UsageError(
                f"source {source.name} holds {meaning(other)}, but {layout.root} holds "
                f"{meaning(kind)}: a heal never mixes two seq spaces"
            )
    if not policy.live and any(layout.spool_dir.glob("*.wal")):
        raise ArchiveError(
            f"{layout.root} has spool files a stopped recorder has not sealed; start "
            "'replica record' on it once (it recovers them first), then heal"
        )
    for source in sources:
        summary.sources.append(source.name)
        _heal_from(layout, source, policy, publisher, summary)
        summary.warnings += source.warnings
    summary.gaps += record_holes(layout, policy.may_record, publisher.publish)
    return summary


def _heal_from(
    layout: ArchiveLayout,
    source: Source,
    policy: Policy,
    publisher: Publisher,
    summary: HealSummary,
) -> None:
    archive = ArchiveRows(layout.segments())
    pending = Pending()
    skipped: dict[str, int] = {}
    conflicts: list[dict[str, Any]] = []
    for chunk in source.chunks():
        rows = chunk.rows
        if not rows.num_rows:
            continue
        seqs = rows.column("seq").to_numpy()
        if (np.diff(seqs) <= 0).any():
            raise ArchiveError(
                f"{source.name} has a file whose seqs are unsorted or repeated; run 'replica "
                "verify' on it"
            )
        lo, hi = int(seqs[0]), int(seqs[-1])
        held = pa.concat_tables([archive.rows(lo, hi), pending.rows(lo, hi)]).sort_by("seq")
        held_seqs = held.column("seq").to_numpy()
        _, mine, theirs = np.intersect1d(held_seqs, seqs, assume_unique=True, return_indices=True)
        summary.compared += len(mine)
        for at in _differing(held, mine, rows, theirs):
            conflicts.append(_conflict(rows, at, held, source.name, summary))
        new = np.flatnonzero(~np.isin(seqs, held_seqs, assume_unique=True))
        allowed = policy.sift(seqs[new], rows.column("ts_ms").to_numpy()[new], skipped)
        if allowed.any():
            pending.add(rows.take(new[allowed]), chunk.metadata)
        if pending.size >= PENDING_ROWS:
            _write_pending(layout, pending, source.name, policy, publisher, summary)
            archive = ArchiveRows(layout.segments())
    _write_pending(layout, pending, source.name, policy, publisher, summary)
    for why, count in skipped.items():
        summary.warnings.append(f"{count} seqs of {source.name} not added: {why}")
    _quarantine(layout, conflicts, publisher)


def _day(ts_ms: int) -> date:
    return datetime.fromtimestamp(ts_ms // 1000, UTC).date()


def _differing(held: pa.Table, mine: np.ndarray, rows: pa.Table, theirs: np.ndarray) -> list[int]:
    """Positions in ``rows`` (of the pairs ``mine``/``theirs``) whose payloads differ."""
    if not len(mine):
        return []
    ours = held.column("raw").take(pa.array(mine))
    other = rows.column("raw").take(pa.array(theirs))
    same = pc.equal(ours, other).to_numpy(zero_copy_only=False)
    return [int(at) for at in theirs[~same]]


def _conflict(
    rows: pa.Table, at: int, held: pa.Table, source: str, summary: HealSummary
) -> dict[str, Any]:
    seq = rows.column("seq")[at].as_py()
    theirs = rows.column("raw")[at].as_py()
    held_at = int(np.searchsorted(held.column("seq").to_numpy(), seq))
    ours = held.column("raw")[held_at].as_py()
    reason = (
        f"seq {seq} differs in {source}: the archive's {_describe(ours)} is kept, the "
        f"source's {_describe(theirs)} is quarantined"
    )
    summary.conflicts.append(reason)
    row = rows.slice(at, 1).to_pylist()[0]
    frame = command_frame(
        ReplayRecord(
            row["seq"], row["ts_ms"], row["ingest_ts_us"], row["publish_ts_us"], row["recv_ts_us"],
            row["raw"], None,
        )
    )  # fmt: skip
    return {
        "recv_ts_us": time.time_ns() // 1000,
        "kind": "conflict",
        "reason": reason,
        "seq": seq,
        "frame": frame[:FRAME_TEXT_CAP],
        "frame_bytes": len(frame),
    }


def _describe(payload: bytes) -> str:
    return f"{len(payload)} bytes sha256 {hashlib.sha256(payload).hexdigest()[:16]}"


def _write_pending(
    layout: ArchiveLayout,
    pending: Pending,
    source: str,
    policy: Policy,
    publisher: Publisher,
    summary: HealSummary,
) -> None:
    for day, rows, metadata in pending.take_days():
        segments = layout.segments()
        result = publisher.write_day(
            layout, day, rows, segments, metadata, source, policy.may_record
        )
        summary.added += result.added
        summary.segments_written += result.written
        summary.segments_rewritten += result.rewritten
        summary.gaps += result.gaps
        summary.warnings += result.warnings


def _quarantine(
    layout: ArchiveLayout, conflicts: list[dict[str, Any]], publisher: Publisher
) -> None:
    """Quarantine each conflict once: one an earlier run quarantined (same seq, same frame) is
    reported again but not written again."""
    if not conflicts:
        return
    seen = set()
    for path in layout.table_files(layout.quarantine_dir):
        table = read_table(path, columns=["kind", "seq", "frame"])
        for row in table.to_pylist():
            if row["kind"] == "conflict":
                seen.add((row["seq"], row["frame"]))
    fresh = [row for row in conflicts if (row["seq"], row["frame"]) not in seen]
    if fresh:
        unit = f"heal-{fresh[0]['recv_ts_us']}-{os.getpid()}"
        path = layout.unit_path(layout.quarantine_dir, fresh[0]["recv_ts_us"] // 1000, unit)
        table = pa.Table.from_pylist(fresh, schema=QUARANTINE_SCHEMA)
        publisher.publish(table, path)
