"""The recorder's protocol core, free of I/O: frames in; units to seal and spool writes out.

A *unit* is what one spool file holds and one seal publishes: one raw segment, plus the gaps and
quarantined frames seen meanwhile. A segment is filed under the UTC hour of its first command's
``ts_ms`` and sealed when a command's ``ts_ms`` moves into a later hour; a command whose ``ts_ms``
steps back into an earlier hour stays in the open segment and is counted (``ts_back``), so a
clock flapping across an hour boundary cannot turn every command into a file. No ``ts_ms`` in a
segment is later than the end of its hour; earlier ones are the anomaly the count reports.

Every frame is put on the spool of the unit that is open when it arrives, after any seal it
causes, so a spool file replayed from its header state reproduces its unit exactly: that is how
recovery stays idempotent. A command is spooled decoded (its payload as bytes, not hex):
everything the archive keeps of it, at half the size, and recovery need not parse it again.

The I/O layer feeds ``connection_opened``/``receive``/``tick`` and drains ``take_spool_ops`` and
``take_sealed``; it never decides anything itself.
"""

from __future__ import annotations

import hashlib
import secrets
from array import array
from dataclasses import dataclass, field

from replica.recorder.frames import BadFrame, Command, parse_frame
from replica.recorder.quarantine import TooBig, UnitQuarantine
from replica.recorder.seq import APPEND, DUPLICATE, Gap, SeqTracker, TrackerState
from replica.schemas.archive import MS_PER_HOUR
from replica.schemas.frames import command_frame

# Bounds a unit's memory and keeps its payload column within Arrow's 2 GiB binary offsets.
MAX_UNIT_PAYLOAD_BYTES = 256 * 2**20

# A spool record: (recv_ts_us, item). The item is a decoded Command, the text (or bytes) of any
# other frame, a TooBig for a frame refused unread, or None for a new connection.
SpoolRecord = tuple[int, "Command | TooBig | str | bytes | None"]


@dataclass(frozen=True)
class SpoolOpen:
    unit_id: str
    header: dict


@dataclass(frozen=True)
class SpoolAppend:
    unit_id: str
    records: list[SpoolRecord]


@dataclass(frozen=True)
class SpoolClose:
    unit_id: str


SpoolOp = SpoolOpen | SpoolAppend | SpoolClose


@dataclass(frozen=True)
class GapRow:
    gap: Gap
    detected_ts_us: int
    after_ts_ms: int


@dataclass
class Unit:
    unit_id: str
    opened_us: int
    hour: int | None = None
    seq: array = field(default_factory=lambda: array("q"))
    ts_ms: array = field(default_factory=lambda: array("q"))
    ingest_ts_us: array = field(default_factory=lambda: array("q"))
    publish_ts_us: array = field(default_factory=lambda: array("q"))
    recv_ts_us: array = field(default_factory=lambda: array("q"))
    raw: list[bytes] = field(default_factory=list)
    gaps: list[GapRow] = field(default_factory=list)
    quarantine: UnitQuarantine = field(default_factory=UnitQuarantine)
    payload_bytes: int = 0
    records: int = 0  # spool records, so that a unit with nothing in it is never sealed

    @property
    def rows(self) -> int:
        return len(self.raw)

    @property
    def held_bytes(self) -> int:
        """Roughly the memory the unit holds: payloads, their bytes objects, five int64 columns
        and the quarantine."""
        return self.payload_bytes + 73 * len(self.raw) + self.quarantine.held_bytes


class RecentPayloads:
    """The payloads of the last ``size`` seqs, to tell a harmless duplicate from a conflict.

    Duplicates come right after a reconnect or restart, so a window suffices; an older duplicate
    is counted but cannot be compared.
    """

    def __init__(self, size: int = 8192) -> None:
        if size & (size - 1):
            raise ValueError("size must be a power of two")
        self.size = size
        self._mask = size - 1
        self._seqs = [-1] * size
        self._raws: list[bytes | None] = [None] * size

    def remember(self, seq: int, raw: bytes) -> None:
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._raws[slot] = raw

    def lookup(self, seq: int) -> bytes | None:
        slot = seq & self._mask
        return self._raws[slot] if self._seqs[slot] == seq else None


@dataclass
class SessionStats:
    frames: int = 0
    appended: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    gaps: int = 0
    missing: int = 0
    connections: int = 0
    ts_back: int = 0  # commands filed under a later hour than their ts_ms's (a clock stepped back)
    first_seq: int | None = None
    last_lag_us: int | None = None  # recv_ts_us - publish_ts_us of the last command


def new_unit_id(now_us: int) -> str:
    """Sortable by time, unique even if the clock steps back across a restart."""
    return f"{now_us:017d}-{secrets.token_hex(4)}"


class FeedSession:
    def __init__(
        self,
        state: TrackerState,
        *,
        now_us: int,
        recent: RecentPayloads,
        segment_rows: int | None = None,
        segment_us: int | None = None,
        quarantine_bytes: int | None = None,
        unit_id: str | None = None,
    ) -> None:
        """``segment_rows``/``segment_us``/``quarantine_bytes`` of None never seal on size, age
        or the memory held by quarantined frames: the recovery of a spool file must rebuild the
        one unit it holds, whatever the live limits were (or a spool from an older version)."""
        self.tracker = SeqTracker(state)
        self.stats = SessionStats()
        self._recent = recent
        self._segment_rows = segment_rows or 2**63
        self._segment_us = segment_us or 2**63
        self._quarantine_bytes = quarantine_bytes or 2**63
        self._ops: list[SpoolOp] = []
        self._records: list[SpoolRecord] = []
        self._sealed: list[Unit] = []
        self._unit = self._open_unit(now_us, unit_id or new_unit_id(now_us))

    # ---- inputs -------------------------------------------------------------------------------

    def connection_opened(self, now_us: int) -> None:
        self._spool(now_us, None)
        self.stats.connections += 1
        self.tracker.connection_opened()

    def receive(self, frame: str | bytes, recv_us: int) -> None:
        self.stats.frames += 1
        try:
            cmd = parse_frame(frame)
        except BadFrame as bad:
            self._spool(recv_us, frame)
            self._quarantine(recv_us, bad.kind, bad.reason, None, frame)
            return
        if type(cmd) is Command:
            self._command(cmd, recv_us)
        else:  # the connected greeting: nothing to archive
            self._spool(recv_us, frame)

    def frame_too_big(self, too_big: TooBig, recv_us: int) -> None:
        """A frame the connection refused unread for its size: quarantined by size alone."""
        self.stats.frames += 1
        self._spool(recv_us, too_big)
        self._unit.quarantine.add_unread(recv_us, too_big)
        self._quarantined(recv_us)

    def replay(self, records: list[SpoolRecord]) -> None:
        """Feed spooled records back in, as recovery does."""
        for recv_us, item in records:
            if item is None:
                self.connection_opened(recv_us)
            elif type(item) is Command:
                self.stats.frames += 1
                self._command(item, recv_us)
            elif type(item) is TooBig:
                self.frame_too_big(item, recv_us)
            else:
                self.receive(item, recv_us)

    def _command(self, cmd: Command, recv_us: int) -> None:
        # The recorder's hottest path: locals over attribute lookups, no avoidable calls.
        seq, ts_ms, ingest_ts_us, publish_ts_us, raw = cmd
        hour = ts_ms // MS_PER_HOUR
        unit = self._unit
        last = self.tracker.state.last_seq
        if (
            unit.raw
            and (last is None or seq > last)
            and (
                hour > unit.hour
                or len(unit.raw) >= self._segment_rows
                or unit.payload_bytes >= MAX_UNIT_PAYLOAD_BYTES
                or recv_us - unit.opened_us >= self._segment_us
            )
        ):
            unit = self.seal(recv_us)
        self._records.append((recv_us, cmd))
        unit.records += 1
        verdict = self.tracker.observe(seq, ts_ms)
        if verdict is not APPEND:
            if verdict is DUPLICATE:
                self._duplicate(cmd, recv_us)
                return
            self._gap(verdict, recv_us, ts_ms)
        if not unit.raw:
            unit.hour = hour
        elif hour < unit.hour:
            self.stats.ts_back += 1
        unit.seq.append(seq)
        unit.ts_ms.append(ts_ms)
        unit.ingest_ts_us.append(ingest_ts_us)
        unit.publish_ts_us.append(publish_ts_us)
        unit.recv_ts_us.append(recv_us)
        unit.raw.append(raw)
        unit.payload_bytes += len(raw)
        self._recent.remember(seq, raw)
        stats = self.stats
        stats.appended += 1
        stats.last_lag_us = recv_us - publish_ts_us
        if stats.first_seq is None:
            stats.first_seq = seq

    def tick(self, now_us: int) -> None:
        """Seal a unit that has aged past ``segment_us`` even when the feed is quiet."""
        unit = self._unit
        if unit.records and now_us - unit.opened_us >= self._segment_us:
            self.seal(now_us)

    # ---- outputs ------------------------------------------------------------------------------

    def seal(self, now_us: int) -> Unit:
        """Close the open unit (if it holds anything) and open the next; returns the open one."""
        unit = self._unit
        if unit.records:
            self._flush_records()
            self._ops.append(SpoolClose(unit.unit_id))
            self._sealed.append(unit)
            self._unit = self._open_unit(now_us, new_unit_id(now_us))
        return self._unit

    def take_spool_ops(self) -> list[SpoolOp]:
        self._flush_records()
        ops, self._ops = self._ops, []
        return ops

    def take_sealed(self) -> list[Unit]:
        sealed = self._sealed[:]
        self._sealed.clear()
        return sealed

    @property
    def sealed(self) -> list[Unit]:
        """Units sealed and not yet taken (the same list object for the session's life)."""
        return self._sealed

    @property
    def open_unit(self) -> Unit:
        return self._unit

    # ---- internals ----------------------------------------------------------------------------

    def _open_unit(self, now_us: int, unit_id: str) -> Unit:
        header = {"unit": unit_id, "opened_us": now_us, "state": self.tracker.state.to_json()}
        self._ops.append(SpoolOpen(unit_id, header))
        return Unit(unit_id, now_us)

    def _spool(self, recv_us: int, item: Command | str | bytes | None) -> None:
        self._records.append((recv_us, item))
        self._unit.records += 1

    def _flush_records(self) -> None:
        if self._records:
            self._ops.append(SpoolAppend(self._unit.unit_id, self._records))
            self._records = []

    def _duplicate(self, cmd: Command, recv_us: int) -> None:
        self.stats.duplicates += 1
        archived = self._recent.lookup(cmd.seq)
        if archived is not None and archived != cmd.raw:
            self.stats.conflicts += 1
            reason = (
                f"seq {cmd.seq} repeated with a different payload: archived "
                f"{len(archived)} bytes sha256 {hashlib.sha256(archived).hexdigest()[:16]}, "
                f"this frame {len(cmd.raw)} bytes sha256 {hashlib.sha256(cmd.raw).hexdigest()[:16]}"
            )
            self._quarantine(recv_us, "conflict", reason, cmd.seq, command_frame(cmd))

    def _gap(self, gap: Gap, recv_us: int, after_ts_ms: int) -> None:
        self._unit.gaps.append(GapRow(gap, recv_us, after_ts_ms))
        self.stats.gaps += 1
        self.stats.missing += gap.missing

    def _quarantine(
        self, recv_us: int, kind: str, reason: str, seq: int | None, frame: str | bytes
    ) -> None:
        self._unit.quarantine.add(recv_us, kind, reason, seq, frame)
        self._quarantined(recv_us)

    def _quarantined(self, recv_us: int) -> None:
        """Count a frame just quarantined (and spooled) in the open unit; seal the unit if its
        quarantine holds all the memory it may: the frame is the unit's last record, so a
        replay of its spool seals there too."""
        self.stats.quarantined += 1
        if self._unit.quarantine.held_bytes >= self._quarantine_bytes:
            self.seal(recv_us)
