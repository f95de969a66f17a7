"""Bringing an archive back to a consistent state before recording resumes.

Temporary files of an interrupted write are removed, leftover spools are replayed into the
units they held, and the seq tracker resumes after the last archived seq. Spools are replayed in
order, and the commands one unit still held (waiting for a missing seq from another endpoint)
are handed to the next: its spool starts with them too, unless the crash came before it got
them; after the last spool, nothing more can come, so they are archived, the seqs before them
gaps. A spool damaged on disk
gives what its intact chunks hold and is then moved to ``spool/damaged/``, never deleted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.recorder.merge import EndpointState
from replica.recorder.segments import publish_unit
from replica.recorder.seq import Cause, TrackerState
from replica.recorder.session import Carry, FeedSession
from replica.recorder.spool import damaged_dir, leftover_spools, read_spool
from replica.recorder.store import learn_store_tail, uploaded_tails
from replica.recorder.units import RawChunk, RecentPayloads, SpoolRecord, Unit
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError
from replica.schemas.seqspace import FEED, claim
from replica.schemas.storage import Location

log = logging.getLogger(__name__)


@dataclass
class Recovery:
    spools: int = 0
    frames: int = 0
    torn: int = 0
    damaged: int = 0
    files: list[Path] = field(default_factory=list)


def prepare_archive(
    layout: ArchiveLayout, metadata: dict[bytes, str], store: Location | None
) -> tuple[TrackerState, RecentPayloads, Recovery]:
    """Make ``layout`` ready to record into, before the first connection: its directories, its
    claim to the feed's seq space, no temporaries of a killed write, the spools of a killed run
    sealed. Returns where the archive ends (the state, and the recent payloads duplicates are
    checked against) and what the recovery did. ``store``: the bucket this local staging
    archive is uploaded to, whose end may be ahead of what is left locally."""
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        for table_dir in (layout.raw_dir, layout.gaps_dir, layout.quarantine_dir):
            table_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot use the archive {layout.root}: {exc}") from exc
    claim(layout, FEED, "replica record")
    remove_temporary_files(layout)
    recent = RecentPayloads()
    if store is not None:
        learn_store_tail(layout, store, recent.size)
    state = archived_tail(layout, recent)  # also seeds duplicate checks for the recovery
    recovery = recover_spools(layout, recent, metadata)
    if recovery.spools:
        log.info(
            "recovered %d frames from %d spool file(s) into %d file(s)",
            recovery.frames,
            recovery.spools,
            len(recovery.files),
        )
    if recovery.files:  # the recovery moved the archive's end
        state = archived_tail(layout, recent)
    if state.last_seq is not None:
        log.info("resuming %s after seq %d", layout.root, state.last_seq)
    return state, recent, recovery


def remove_temporary_files(layout: ArchiveLayout) -> None:
    for path in layout.temporary_files():
        log.info("removing %s, left by an interrupted write", path)
        path.unlink(missing_ok=True)


def archived_tail(layout: ArchiveLayout, recent: RecentPayloads) -> TrackerState:
    """The state after the last archived command; its payloads seed duplicate checks."""
    candidates = [(s.last_seq, s.path) for s in layout.segments()[-1:]]
    candidates += uploaded_tails(layout)[-1:]  # recording to a store: what went up last
    if not candidates:
        return TrackerState()
    _, last = max(candidates)
    try:
        table = _last_rows(last, recent.size)
    except Exception as exc:
        raise ArchiveError(
            f"cannot read the last segment {last}: {exc}; run 'replica verify'"
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
    spools = leftover_spools(layout.spool_dir)
    carry: Carry = []
    for index, path in enumerate(spools):
        try:
            carry = _recover_spool(
                path, layout, recent, metadata, recovery, carry, last=index == len(spools) - 1
            )
        except OSError as exc:  # a full disk, most likely: the spool waits for the next start
            raise ArchiveError(
                f"cannot recover {path} into the archive: {exc.strerror or exc}; it is kept, "
                "and recovered when the recorder starts again with space to write"
            ) from exc
    return recovery


def _session(header: dict[str, object], recent: RecentPayloads) -> FeedSession:
    state = header["state"]
    opened_us = header["opened_us"]
    endpoints = header.get("endpoints")
    states = header.get("endpoint_states")
    gap_wait_us = header.get("gap_wait_us")
    return FeedSession(
        TrackerState.from_json(state if isinstance(state, dict) else {}),
        now_us=opened_us if isinstance(opened_us, int) else 0,
        recent=recent,
        unit_id=str(header["unit"]),
        endpoints=tuple(map(str, endpoints)) if isinstance(endpoints, list) else ("",),
        gap_wait_us=gap_wait_us if isinstance(gap_wait_us, int) else 0,
        arrivals=bool(header.get("arrivals")),
        endpoint_states=[EndpointState.from_json(s) for s in states]
        if isinstance(states, list)
        else None,
    )


def _replayed_units(
    session: FeedSession, contents_records: list[SpoolRecord], carry: Carry, last: bool, end_us: int
) -> tuple[list[Unit], Carry]:
    """The units one spool's replay publishes, and what it hands to the next spool's."""
    session.restore(carry)
    session.replay(contents_records)
    if last:  # nothing more can come: archive what is held, close what was open
        session.finish(end_us, "the recorder stopped without closing it (killed or crashed)")
        session.seal(end_us)
        return _units(session.take_sealed()), []
    session.seal(end_us)
    sealed = _units(session.take_sealed())
    # The next spool replays from where this unit was sealed; the first seal's carry is what
    # its spool starts with.
    return sealed[:1], session.first_carry or []


def _units(sealed: list[Unit | RawChunk]) -> list[Unit]:
    """A recovery's session is built without chunks: each unit is rebuilt whole."""
    units = [item for item in sealed if isinstance(item, Unit)]
    if len(units) != len(sealed):
        raise ValueError("a recovery session handed out chunks")
    return units


def _recover_spool(
    path: Path,
    layout: ArchiveLayout,
    recent: RecentPayloads,
    metadata: dict[bytes, str],
    recovery: Recovery,
    carry: Carry,
    last: bool,
) -> Carry:
    contents = read_spool(path)
    header = contents.header
    if contents.header_lost:
        header = _rebuilt_header(path, layout, recent)
    frames = 0
    if header is not None:
        session = _session(header, recent)
        times = [recv_us for recv_us, _ in contents.records]
        end_us = max([session.open_unit.opened_us, *times])
        units, carry = _replayed_units(session, contents.records, carry, last, end_us)
        for unit in units:
            recovery.files += publish_unit(unit, layout, metadata)
        frames = session.stats.frames
    recovery.frames += frames
    recovery.spools += 1
    if contents.torn:
        recovery.torn += 1
        log.warning("%s ends in a torn chunk (a crash mid-write); keeping what precedes it", path)
    if contents.damaged_bytes or (contents.header_lost and header is None):
        recovery.damaged += 1
        kept = damaged_dir(layout.spool_dir) / path.name
        kept.parent.mkdir(exist_ok=True)
        os.replace(path, kept)
        log.warning(
            "%s is damaged: %d bytes of it could not be read%s; recovered %d frames from its "
            "intact chunks (commands lost with the damage show as a gap); moved it to %s",
            path,
            contents.damaged_bytes,
            _header_note(contents.header_lost, header),
            frames,
            kept,
        )
    else:
        path.unlink()
    return carry


def _rebuilt_header(
    path: Path, layout: ArchiveLayout, recent: RecentPayloads
) -> dict[str, object] | None:
    """A lost header, rebuilt: the unit id and opening time are the file's name, and the seq
    tracker resumes from the archive's end, as at a restart (spools are recovered in order)."""
    opened = path.stem.partition("-")[0]
    if not opened.isdigit():
        return None
    state = archived_tail(layout, recent)
    return {"unit": path.stem, "opened_us": int(opened), "state": state.to_json()}


def _header_note(header_lost: bool, header: dict[str, object] | None) -> str:
    if not header_lost:
        return ""
    if header is None:
        return ", including its header, and its name does not say which unit it held"
    return ", including its header, rebuilt from the file name and the archive's last seq"
