"""The half of ``FeedSession`` that builds its output: the open unit (a command appended to it,
a gap or a quarantined frame recorded in it), the spool records, and the units and chunks
handed to the writers. Kept apart from ``session.py``, which holds the decisions: what a frame
is, whether a command is archived now, held, or a duplicate, and when a unit is sealed.
"""

from __future__ import annotations

from replica.recorder.frames import Command
from replica.recorder.merge import EndpointState, EndpointTotals, Held
from replica.recorder.seq import APPEND, Gap, SeqTracker
from replica.recorder.units import (
    Carried,
    GapRow,
    Item,
    RawChunk,
    RecentPayloads,
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

Carry = list[tuple[Command, int, int]]  # held commands: command, endpoint, recv_ts_us


class SessionOutput:
    """The state ``FeedSession.__init__`` sets up, as far as building the output needs it."""

    tracker: SeqTracker
    stats: SessionStats
    endpoints: tuple[str, ...]
    totals: list[EndpointTotals]
    first_carry: Carry | None  # what the first seal carried to the next unit
    _several: bool
    _arrivals: bool
    _states: list[EndpointState]
    _gap_wait_us: int
    _held: Held
    _recent: RecentPayloads
    _quarantine_bytes: int
    _chunk_rows: int
    _chunk_bytes: int
    _ops: list[SpoolOp]
    _records: list[SpoolRecord]
    _sealed: list[Unit | RawChunk]
    _unit: Unit

    def seal(self, now_us: int) -> Unit:
        """Close the open unit (if it holds anything) and open the next; returns the open one."""
        unit = self._unit
        if unit.records:
            self._flush_records()
            self._ops.append(SpoolClose(unit.unit_id))
            self._sealed.append(unit)
            self._unit = self._open_unit(now_us, new_unit_id(now_us, unit.unit_id))
            carry = self._held.in_order()
            if self.first_carry is None:
                self.first_carry = carry
            for cmd, endpoint, recv_us in carry:
                self._spool(recv_us, Carried(cmd), endpoint)
        return self._unit

    def take_spool_ops(self) -> list[SpoolOp]:
        self._flush_records()
        ops, self._ops = self._ops, []
        return ops

    def take_sealed(self) -> list[Unit | RawChunk]:
        """Sealed units, and the chunks of units' rows, in the order the writer takes them."""
        sealed = self._sealed[:]
        self._sealed.clear()
        return sealed

    @property
    def sealed(self) -> list[Unit | RawChunk]:
        """Units sealed and not yet taken (the same list object for the session's life)."""
        return self._sealed

    @property
    def open_unit(self) -> Unit:
        return self._unit

    @property
    def held(self) -> int:
        """Commands waiting for a missing seq before them."""
        return len(self._held)

    def carry(self) -> Carry:
        """The held commands, in seq order: what a recovery hands to the next unit's replay."""
        return self._held.in_order()

    def _append(self, cmd: Command, endpoint: int, recv_us: int) -> None:
        seq, ts_ms, ingest_ts_us, publish_ts_us, raw = cmd
        hour = ts_ms // MS_PER_HOUR
        unit = self._unit
        verdict = self.tracker.observe(seq, ts_ms)
        if verdict is not APPEND and isinstance(verdict, Gap):
            self._gap(verdict, recv_us, ts_ms)
        if not unit.rows:
            unit.hour = hour
            unit.first_seq = seq
        elif hour < unit.hour:
            self.stats.ts_back += 1
        unit.seq.append(seq)
        unit.ts_ms.append(ts_ms)
        unit.ingest_ts_us.append(ingest_ts_us)
        unit.publish_ts_us.append(publish_ts_us)
        unit.recv_ts_us.append(recv_us)
        unit.raw.append(raw)
        unit.rows += 1
        unit.payload_bytes += len(raw)
        if (
            len(unit.raw) >= self._chunk_rows
            or unit.payload_bytes - unit.chunked_bytes >= self._chunk_bytes
        ):
            self._sealed.append(unit.take_chunk())
        self._recent.remember(seq, raw)
        self._states[endpoint].won += 1
        self.totals[endpoint].won += 1
        stats = self.stats
        stats.appended += 1
        stats.last_lag_us = recv_us - publish_ts_us
        if stats.first_seq is None:
            stats.first_seq = seq

    def _open_unit(self, now_us: int, unit_id: str) -> Unit:
        header: dict[str, object] = {
            "unit": unit_id,
            "opened_us": now_us,
            "state": self.tracker.state.to_json(),
        }
        if self._several:
            header["endpoints"] = list(self.endpoints)
            header["endpoint_states"] = [state.to_json() for state in self._states]
            header["gap_wait_us"] = self._gap_wait_us
            header["arrivals"] = self._arrivals
        self._ops.append(SpoolOpen(unit_id, header))
        endpoints = self.endpoints if self._arrivals else ()
        return Unit(unit_id=unit_id, opened_us=now_us, endpoints=endpoints)

    def _spool(self, recv_us: int, item: Item, endpoint: int = 0) -> None:
        self._records.append((recv_us, Via(endpoint, item) if endpoint else item))
        self._unit.records += 1

    def _flush_records(self) -> None:
        if self._records:
            self._ops.append(SpoolAppend(self._unit.unit_id, self._records))
            self._records = []

    def _gap(self, gap: Gap, recv_us: int, after_ts_ms: int) -> None:
        self._unit.gaps.append(GapRow(gap, recv_us, after_ts_ms))
        self.stats.gaps += 1
        self.stats.missing += gap.missing

    def _quarantine(
        self, recv_us: int, kind: str, reason: str, seq: int | None, frame: str | bytes
    ) -> None:
        self._unit.quarantine.add(recv_us, kind, reason, seq, frame)
        self._quarantined(recv_us, kind)

    def _quarantined(self, recv_us: int, kind: str) -> None:
        """Count a frame just quarantined (and spooled) in the open unit; seal the unit if its
        quarantine holds all the memory it may: the frame is the unit's last record, so a
        replay of its spool seals there too."""
        self.stats.quarantined += 1
        kinds = self.stats.quarantined_kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        if self._unit.quarantine.held_bytes >= self._quarantine_bytes:
            self.seal(recv_us)
