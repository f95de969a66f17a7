"""The recorder's hook for a relay (``replica record --serve``): each archived command, in seq
order, once the spool write that holds it has returned.

A command reaches the hook only after its spool chunk was written: the kernel holds it, so a
kill -9 of the recorder cannot lose from the archive anything a relay's client saw (the next
run recovers it from the spool). What a crash of the machine (a power cut) can lose is what
was written since the spool's last fdatasync, which the spool thread makes at the recorder's
maintenance cadence (``MAINTENANCE_US``, 50 ms), as the plain recorder flushes: a client may
have seen those commands, so after a power cut a client resuming with ``from_seq`` can find
seqs it saw missing from the archive (a seq jump, as a gap). Waiting for an fdatasync before
relaying would close that window at the cost of a thread round trip and a disk sync per
batch, which the issue's rule (kill -9) does not ask for.

The commands are read from the session's units (the columns ``_append`` fills, in seq order),
not from the spool records, so that duplicates, commands held for a missing seq and merge
markers never reach a client: exactly the archive's commands do.

Latency: the recorder pumps once per burst of frames (as soon as its receive loop has taken
every frame that had arrived, ``Recorder._relay_soon``): the spool write is made on the event
loop (``Writers(spool_on_loop=True)``) and the batch is handed to ``on_archived`` in the same
call, so nothing waits for a timer, a thread or the disk.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import TypeAlias

from replica.recorder.session import FeedSession
from replica.recorder.writers import Writers

# The raw table's columns, in order (seq, ts_ms, ingest_ts_us, publish_ts_us, recv_ts_us, raw),
# of the commands archived since the last hand-off: slices of the units' own columns.
ArchivedColumns: TypeAlias = (
    "tuple[array[int], array[int], array[int], array[int], array[int], list[bytes]]"
)
OnArchived = Callable[[ArchivedColumns], None]


class Relay:
    """Hands ``on_archived`` the commands archived since the last pump, on the event loop's
    thread, once the spool write holding them has returned (never if it failed)."""

    def __init__(self, on_archived: OnArchived) -> None:
        self._on_archived = on_archived
        # The open unit's rows at the last take (its ``seq`` column, which a chunk handed to
        # the writer keeps while the unit starts new columns), and how far they were read.
        self._columns: array[int] | None = None
        self._taken = 0

    def pump(self, session: FeedSession, writers: Writers) -> None:
        """``writers.pump`` (which writes the spool, on the loop), then the commands archived
        since the last call relayed."""
        archived = self._take(session)  # before the pump takes the sealed units
        writers.pump(session)
        if archived is not None:
            self._on_archived(archived)

    def _take(self, session: FeedSession) -> ArchivedColumns | None:
        """The commands appended since the last take: the rest of the rows the open unit held
        then (sealed since, handed out as a chunk, or still open), then every row after them."""
        taken: ArchivedColumns | None = None
        for rows in (*session.sealed, session.open_unit):
            start = self._taken if rows.seq is self._columns else 0
            if len(rows.seq) > start:
                columns = (
                    rows.seq[start:],
                    rows.ts_ms[start:],
                    rows.ingest_ts_us[start:],
                    rows.publish_ts_us[start:],
                    rows.recv_ts_us[start:],
                    rows.raw[start:],
                )
                taken = columns if taken is None else _joined(taken, columns)
        self._columns = session.open_unit.seq
        self._taken = len(self._columns)
        return taken


def _joined(first: ArchivedColumns, then: ArchivedColumns) -> ArchivedColumns:
    """Two units' rows in one batch: rare (a seal within a burst)."""
    return (
        first[0] + then[0],
        first[1] + then[1],
        first[2] + then[2],
        first[3] + then[3],
        first[4] + then[4],
        first[5] + then[5],
    )
