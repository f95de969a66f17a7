"""The recorder's hook for a relay (``replica record --serve``): each archived command, in seq
order, once the spool write that holds it is on disk.

A command reaches the hook only after its spool chunk was written and fdatasync'd, so nothing a
relay's client saw can be lost from the archive by a kill -9 (or a power cut) of the recorder.
The commands are read from the session's units (the columns ``_append`` fills, in seq order),
not from the spool records, so that duplicates, commands held for a missing seq and merge
markers never reach a client: exactly the archive's commands do.

Latency is a group commit: while a spool write is in flight, new commands wait; when it lands,
the recorder pumps at once what came meanwhile (``idle``), so a command waits for at most the
write in flight and its own, rather than the 50 ms maintenance cadence, and a fast feed still
gets large, few writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from replica.recorder.session import FeedSession
from replica.recorder.units import Unit
from replica.recorder.writers import Writers

# seq, ts_ms, ingest_ts_us, publish_ts_us, recv_ts_us, raw: the raw table's columns, in order
ArchivedCommand = tuple[int, int, int, int, int, bytes]
OnArchived = Callable[[list[ArchivedCommand]], None]


class Relay:
    """Hands ``on_archived`` each batch of commands archived since the last pump, on the event
    loop's thread, once its spool write is on disk (never if that write failed)."""

    def __init__(self, on_archived: OnArchived, wake: Callable[[], None]) -> None:
        self._on_archived = on_archived
        self._wake = wake  # called on the loop when no write is in flight: pump now
        self._unit: Unit | None = None  # the open unit at the last take, and how far it was read
        self._taken = 0
        self._in_flight = 0

    @property
    def idle(self) -> bool:
        """No relayed spool write is in flight: the next command should be pumped at once."""
        return self._in_flight == 0

    def pump(self, session: FeedSession, writers: Writers) -> None:
        """``writers.pump``, and the commands archived since the last call relayed after it."""
        batch = self._take(session)  # before the pump takes the sealed units
        writers.pump(session)
        if not batch:
            return
        self._in_flight += 1
        loop = asyncio.get_running_loop()
        writers.after_spooled(lambda: loop.call_soon_threadsafe(self._spooled, batch))

    def _spooled(self, batch: list[ArchivedCommand]) -> None:
        self._in_flight -= 1
        self._on_archived(batch)
        if not self._in_flight:
            self._wake()

    def _take(self, session: FeedSession) -> list[ArchivedCommand]:
        """The commands appended since the last take: the rest of the unit open then (sealed
        since, or still open), then those of every unit opened after it."""
        batch: list[ArchivedCommand] = []
        for unit in (*session.sealed, session.open_unit):
            start = self._taken if unit is self._unit else 0
            if len(unit.seq) > start:
                batch += zip(
                    unit.seq[start:],
                    unit.ts_ms[start:],
                    unit.ingest_ts_us[start:],
                    unit.publish_ts_us[start:],
                    unit.recv_ts_us[start:],
                    unit.raw[start:],
                    strict=True,
                )
        self._unit = session.open_unit
        self._taken = len(self._unit.seq)
        return batch
