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
from array import array
from collections.abc import Callable

from replica.recorder.session import FeedSession
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
        # The open unit's rows at the last take (its ``seq`` column, which a chunk handed to
        # the writer keeps while the unit starts new columns), and how far they were read.
        self._columns: array[int] | None = None
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
        """The commands appended since the last take: the rest of the rows the open unit held
        then (sealed since, handed out as a chunk, or still open), then every row after them."""
        batch: list[ArchivedCommand] = []
        for rows in (*session.sealed, session.open_unit):
            start = self._taken if rows.seq is self._columns else 0
            if len(rows.seq) > start:
                batch += zip(
                    rows.seq[start:],
                    rows.ts_ms[start:],
                    rows.ingest_ts_us[start:],
                    rows.publish_ts_us[start:],
                    rows.recv_ts_us[start:],
                    rows.raw[start:],
                    strict=True,
                )
        self._columns = session.open_unit.seq
        self._taken = len(self._columns)
        return batch
