"""The recorder's protocol core, free of I/O: frames in; units to seal and spool writes out.

A *unit* is what one spool file holds and one seal publishes: one raw segment, plus the gaps,
quarantined frames, arrivals and connection rows seen meanwhile. A segment is filed under the
UTC hour of its first command's ``ts_ms`` and sealed when a command's ``ts_ms`` moves into a
later hour; a command whose ``ts_ms`` steps back into an earlier hour stays in the open segment
and is counted (``ts_back``), so a clock flapping across an hour boundary cannot turn every
command into a file. No ``ts_ms`` in a segment is later than the end of its hour.

Several endpoints (the same feed from several places) merge here: each seq is archived once,
from the first delivery, in seq order. A command that arrives ahead of a missing seq is held
while another endpoint could still deliver that seq, for at most ``gap_wait_us`` (and
``MAX_HELD_BYTES``); only then is the seq a gap. One endpoint never waits: nobody else could
deliver.

Every frame is put on the spool of the unit that is open when it arrives, so a spool file
replayed from its header state reproduces its unit exactly: that is how recovery stays
idempotent. A unit sealed while commands are held starts the next unit's spool with them
(``Carried``), and every decision that depends on the clock is spooled (``Release``), so a
replay decides alike. A command is spooled decoded (its payload as bytes, not hex).

The I/O layer feeds ``connection_opened``/``connection_closed``/``receive``/``tick``/``finish``
and drains ``take_spool_ops`` and ``take_sealed``; it never decides anything itself.
"""

from __future__ import annotations

from replica.recorder.frames import BadFrame, Command, parse_frame
from replica.recorder.merge import (
    EndpointState,
    EndpointTotals,
    Held,
    could_deliver,
    releasable,
)
from replica.recorder.quarantine import TooBig, conflict_reason
from replica.recorder.seq import SeqTracker, TrackerState
from replica.recorder.sessionoutput import Carry, SessionOutput
from replica.recorder.units import (
    Carried,
    Closed,
    ConnectionRow,
    Echo,
    GapRow,
    RawChunk,
    RecentPayloads,
    Release,
    SessionStats,
    SpoolAppend,
    SpoolClose,
    SpoolOp,
    SpoolOpen,
    SpoolRecord,
    Unit,
    Via,
    new_unit_id,
)
from replica.schemas.archive import MS_PER_HOUR
from replica.schemas.frames import command_frame

__all__ = ["FeedSession", "GapRow", "RecentPayloads", "SpoolAppend", "SpoolClose", "SpoolOpen"]
__all__ += ["Carry", "SpoolOp", "SpoolRecord", "Unit", "new_unit_id"]

_new_tuple = tuple.__new__  # skips NamedTuple's Python-level __new__ on the hot path

# Bounds a segment's size and keeps its payload column within Arrow's 2 GiB binary offsets.
MAX_UNIT_PAYLOAD_BYTES = 256 * 2**20
# The live recorder hands an open unit's rows to the writer a row group at a time, at this many
# payload bytes (or ``RAW_ROW_GROUP_ROWS`` rows): what bounds its memory, not the segment size.
CHUNK_BYTES = 16 * 2**20


class FeedSession(SessionOutput):
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
        endpoints: tuple[str, ...] = ("",),
        gap_wait_us: int = 0,
        arrivals: bool = False,
        endpoint_states: list[EndpointState] | None = None,
        chunk_rows: int | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        """``segment_rows``/``segment_us``/``quarantine_bytes`` of None never seal on size, age
        or the memory held by quarantined frames: the recovery of a spool file must rebuild the
        one unit it holds, whatever the live limits were (or a spool from an older version).
        ``endpoints`` names the feed's URLs (without credentials); with more than one, every
        delivery is kept as an arrival if ``arrivals``, and each connection as a row. With
        ``chunk_rows``/``chunk_bytes``, an open unit hands its rows out as a ``RawChunk`` (in
        ``take_sealed``, before the unit) whenever it holds that many, or that many payload
        bytes: the writer streams them into the segment, and memory holds a row group, not a
        whole segment."""
        self.tracker = SeqTracker(state)
        self.stats = SessionStats()
        self.endpoints = endpoints
        self.totals = [EndpointTotals(name) for name in endpoints]
        self._several = len(endpoints) > 1
        self._arrivals = arrivals and self._several
        self._states = endpoint_states or [EndpointState() for _ in endpoints]
        self._gap_wait_us = gap_wait_us
        self._held = Held()
        self.first_carry: Carry | None = None  # what the first seal carried to the next unit
        self._recent = recent
        self._segment_rows = segment_rows or 2**63
        self._segment_us = segment_us or 2**63
        self._quarantine_bytes = quarantine_bytes or 2**63
        self._chunk_rows = chunk_rows or 2**63
        self._chunk_bytes = chunk_bytes or 2**63
        self._ops: list[SpoolOp] = []
        self._records: list[SpoolRecord] = []
        self._sealed: list[Unit | RawChunk] = []
        self._unit = self._open_unit(now_us, unit_id or new_unit_id(now_us))

    # ---- inputs -------------------------------------------------------------------------------

    def connection_opened(self, now_us: int, endpoint: int = 0) -> None:
        self._spool(now_us, None, endpoint)
        self.stats.connections += 1
        self.totals[endpoint].connections += 1
        others = any(s.connected for i, s in enumerate(self._states) if i != endpoint)
        self._states[endpoint] = EndpointState(connected=True, since_us=now_us)
        if not others:  # another endpoint still delivering: this reconnect explains no gap
            self.tracker.connection_opened()

    def connection_closed(self, now_us: int, endpoint: int, why: str) -> None:
        """Only several endpoints need to know: a closed one can no longer fill a gap."""
        self.totals[endpoint].last_close = why
        if not self._several:
            return
        self._spool(now_us, Closed(why), endpoint)
        state = self._states[endpoint]
        if state.connected:
            name = self.endpoints[endpoint]
            row = ConnectionRow(name, state.since_us, now_us, why, state.delivered, state.won)
            self._unit.connections.append(row)
        state.connected = False
        self._release(now_us, force=False)

    def receive(self, frame: str | bytes, recv_us: int, endpoint: int = 0) -> None:
        self.stats.frames += 1
        if self._several and type(frame) is str:
            # Another endpoint's copy of a command delivered first, the same text: no parse. An
            # endpoint delivers in order, so its next frame is most likely the seq after its last.
            last = self._states[endpoint].last_seq
            if last is not None and self._recent.is_text_of(frame, last + 1):
                self._echo(last + 1, recv_us, endpoint)
                return
        try:
            cmd = parse_frame(frame)
        except BadFrame as bad:
            self._spool(recv_us, frame, endpoint)
            self._quarantine(recv_us, bad.kind, bad.reason, None, frame)
            return
        if type(cmd) is Command:
            duplicates = self.stats.duplicates
            self._command(cmd, recv_us, endpoint)
            if self._several and self.stats.duplicates == duplicates and type(frame) is str:
                self._recent.remember_text(cmd.seq, frame)
        else:  # the connected greeting: nothing to archive
            self._spool(recv_us, frame, endpoint)

    def frame_too_big(self, too_big: TooBig, recv_us: int, endpoint: int = 0) -> None:
        """A frame the connection refused unread for its size: quarantined by size alone."""
        self.stats.frames += 1
        self._spool(recv_us, too_big, endpoint)
        self._unit.quarantine.add_unread(recv_us, too_big)
        self._quarantined(recv_us, "too_big")

    def replay(self, records: list[SpoolRecord]) -> None:
        """Feed spooled records back in, as recovery does."""
        for recv_us, record in records:
            endpoint, item = record if type(record) is Via else (0, record)
            self._know(endpoint)
            if item is None:
                self.connection_opened(recv_us, endpoint)
            elif type(item) is Command:
                self.stats.frames += 1
                self._command(item, recv_us, endpoint)
            elif type(item) is TooBig:
                self.frame_too_big(item, recv_us, endpoint)
            elif type(item) is Closed:
                self.connection_closed(recv_us, endpoint, item.why)
            elif type(item) is Carried:
                self._restore(item.cmd, endpoint, recv_us)
            elif type(item) is Release:
                self._spool(recv_us, item)
                self._release(recv_us, item.force)
            elif type(item) is Echo:
                self.stats.frames += 1
                self._echo(item.seq, recv_us, endpoint)
            elif isinstance(item, str | bytes):
                self.receive(item, recv_us, endpoint)

    def tick(self, now_us: int) -> None:
        """Seal a unit that has aged past ``segment_us`` even when the feed is quiet, and give
        up waiting for seqs no endpoint delivered in time."""
        unit = self._unit
        if unit.records and now_us - unit.opened_us >= self._segment_us:
            self.seal(now_us)
        if self._held and self._releasable(now_us):
            self._spool(now_us, Release(False))
            self._release(now_us, force=False)

    def finish(self, now_us: int, why: str | None = None) -> None:
        """Archive every held command, the seqs before them gaps: the run ends. With ``why``,
        connections still open end too (a recovery: the recorder died with them open)."""
        if self._held:
            self._spool(now_us, Release(True))
            self._release(now_us, force=True)
        if why is not None:
            for endpoint, state in enumerate(self._states):
                if state.connected:
                    self.connection_closed(now_us, endpoint, why)

    def _command(self, cmd: Command, recv_us: int, endpoint: int) -> None:
        # The recorder's hottest path: locals over attribute lookups, no avoidable calls.
        seq = cmd.seq
        last = self.tracker.state.last_seq
        states = self._states
        if not self._held and (
            (last is not None and seq == last + 1)
            or (last is None and not could_deliver(states, seq - 1, endpoint))
            or (last is not None and seq > last and not could_deliver(states, last + 1, endpoint))
        ):
            hour = cmd.ts_ms // MS_PER_HOUR
            unit = self._unit
            if unit.rows and (
                hour > unit.hour
                or unit.rows >= self._segment_rows
                or unit.payload_bytes >= MAX_UNIT_PAYLOAD_BYTES
                or recv_us - unit.opened_us >= self._segment_us
            ):
                self.seal(recv_us)
            self._spool(recv_us, cmd, endpoint)
            self._delivered(seq, endpoint, recv_us)
            self._append(cmd, endpoint, recv_us)
            return
        if last is not None and seq <= last:
            archived: bytes | None = self._recent.lookup(seq)
        elif seq in self._held:
            archived = self._held.raw(seq)
        else:
            self._spool(recv_us, cmd, endpoint)
            self._delivered(seq, endpoint, recv_us)
            self._held.add(cmd, endpoint, recv_us)
            self._release(recv_us, force=False)
            return
        if self._several and archived == cmd.raw:
            # Another endpoint's copy, the same payload (its timestamps may differ): all the
            # archive keeps of it is its arrival, so it is spooled as its seq alone.
            self._echo(seq, recv_us, endpoint)
            return
        self._spool(recv_us, cmd, endpoint)
        self._delivered(seq, endpoint, recv_us)
        self._duplicate(cmd, recv_us, archived)
        if self._held:  # this endpoint moved on: what it no longer can deliver is a gap
            self._release(recv_us, force=False)

    def restore(self, carry: Carry) -> None:
        for cmd, endpoint, recv_us in carry:
            self._restore(cmd, endpoint, recv_us)

    def _know(self, endpoint: int) -> None:
        """A spool whose header was lost names no endpoints: number those its records have."""
        while endpoint >= len(self.endpoints):
            self.endpoints += (f"endpoint {len(self.endpoints)}",)
            self.totals.append(EndpointTotals(self.endpoints[-1]))
            self._states.append(EndpointState())
            self._several = True

    # ---- merging ------------------------------------------------------------------------------

    def _releasable(self, now_us: int) -> bool:
        return releasable(
            self._held, self._states, self.tracker.state.last_seq, self._gap_wait_us, now_us
        )

    def _release(self, now_us: int, force: bool) -> None:
        """Archive held commands in seq order while the next is due or its wait is over."""
        held = self._held
        while held:
            if not force and not self._releasable(now_us):
                return
            cmd, endpoint, recv_us = held.pop()
            unit = self._unit
            if unit.rows and cmd.ts_ms // MS_PER_HOUR > unit.hour:
                held.add(cmd, endpoint, recv_us)  # the next unit carries it
                self.seal(now_us)
                self._spool(now_us, Release(force))
                continue
            self._append(cmd, endpoint, recv_us)

    def _restore(self, cmd: Command, endpoint: int, recv_us: int) -> None:
        self._spool(recv_us, Carried(cmd), endpoint)
        last = self.tracker.state.last_seq
        if (last is None or cmd.seq > last) and cmd.seq not in self._held:
            self._held.add(cmd, endpoint, recv_us)

    def _echo(self, seq: int, recv_us: int, endpoint: int) -> None:
        """A copy of a command another endpoint delivered first, with the same payload: the
        second hottest path with several endpoints, so ``_spool`` and ``_delivered`` inline."""
        echo = _new_tuple(Echo, (seq,))
        self._records.append((recv_us, _new_tuple(Via, (endpoint, echo)) if endpoint else echo))
        unit = self._unit
        unit.records += 1
        state = self._states[endpoint]
        state.delivered += 1
        if state.last_seq is None or seq > state.last_seq:
            state.last_seq = seq
        self.totals[endpoint].delivered += 1
        if self._arrivals:
            unit.arrival_seq.append(seq)
            unit.arrival_endpoint.append(endpoint)
            unit.arrival_recv_us.append(recv_us)
        self.stats.duplicates += 1
        if self._held:
            self._release(recv_us, force=False)

    def _delivered(self, seq: int, endpoint: int, recv_us: int) -> None:
        state = self._states[endpoint]
        state.delivered += 1
        if state.last_seq is None or seq > state.last_seq:
            state.last_seq = seq
        self.totals[endpoint].delivered += 1
        if self._arrivals:
            unit = self._unit
            unit.arrival_seq.append(seq)
            unit.arrival_endpoint.append(endpoint)
            unit.arrival_recv_us.append(recv_us)

    def _duplicate(self, cmd: Command, recv_us: int, archived: bytes | None) -> None:
        self.stats.duplicates += 1
        if archived is not None and archived != cmd.raw:
            self.stats.conflicts += 1
            reason = conflict_reason(cmd.seq, archived, cmd.raw)
            self._quarantine(recv_us, "conflict", reason, cmd.seq, command_frame(cmd))
