"""The recorder's two disk threads: one appends to the spool, one publishes sealed units.

The event loop hands them work and never waits on them, so a slow disk shows up as a logged
backlog rather than a feed left unread. The backlog is bounded all the same: sealed units and
chunks of open units' rows wait in memory until written, so once ``MAX_BACKLOG_UNITS`` or
``MAX_BACKLOG_BYTES`` of them (or ``MAX_BACKLOG_SPOOL_WRITES`` spool writes, which hold frames
too) wait, ``behind`` tells the recorder to stop reading until the writers catch up (the
feed's TCP window holds the rest), rather than grow until the process is killed for its memory.

With a relay (``record --serve``) the spool is written on the event loop itself
(``spool_on_loop``): each write returns once its chunk is in the page cache, and the spool
thread makes the writes made since the last sync durable (fdatasync) when the recorder asks,
at its maintenance cadence (``sync_spool``), as often as the plain recorder flushes. So the
relay can hand a batch to its clients in the same turn of the loop that received it, without a
round trip through a thread or a sync per burst, and still only after its spool write: a
kill -9 of the process cannot lose what the kernel holds (a power cut can lose the writes of
the last maintenance interval, see ``relay.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from replica.recorder.segmentstream import SegmentStreams
from replica.recorder.session import FeedSession
from replica.recorder.spool import SpoolWriter
from replica.recorder.units import RawChunk, SpoolAppend, SpoolClose, SpoolOp, SpoolOpen, Unit
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BACKLOG_UNITS = 16
MAX_BACKLOG_BYTES = 128 * 2**20  # units and chunks come a row group at a time (16 MiB or less)
MAX_BACKLOG_SPOOL_WRITES = 400  # 20 s of flushes at the usual cadence
_BACKLOG_WARN_UNITS = 2
_BACKLOG_WARN_SPOOL_WRITES = 20  # about a second of flushes not yet on disk
_BACKLOG_WARN_EVERY_S = 30.0


class Writers:
    def __init__(
        self,
        layout: ArchiveLayout,
        metadata: dict[bytes, str],
        published: Callable[[list[Path]], None] | None = None,
        *,
        spool_on_loop: bool = False,
    ) -> None:
        self._layout = layout
        self._metadata = metadata
        self._published = published  # told each unit's new files (the uploader to a store)
        self._spool = SpoolWriter(layout.spool_dir)
        self._segments = SegmentStreams(layout, metadata)
        self._spool_thread = ThreadPoolExecutor(1, "replica-spool")
        self._writer_thread = ThreadPoolExecutor(1, "replica-writer")
        # each publish and the bytes it holds
        self._writes: deque[tuple[Future[int], int]] = deque()
        self._spool_writes: deque[Future[None]] = deque()  # or, on the loop, their syncs
        self._spool_on_loop = spool_on_loop
        self._sync_pending = False  # a sync is queued that has not started yet
        self._unsynced = False  # spool writes made on the loop since the last sync was queued
        self._backlog_bytes = 0
        self._backlog_warned = -math.inf
        self.files_written = 0
        self.units_written = 0  # sealed units published: each at most one raw segment

    @property
    def backlog(self) -> int:
        """Sealed units not yet known to be written."""
        return len(self._writes)

    @property
    def spool_backlog(self) -> int:
        """Spool writes handed to the spool thread and not yet known to be done."""
        return len(self._spool_writes)

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    @property
    def behind(self) -> bool:
        """Whether the units waiting to be written hold all the memory they may."""
        return (
            self.backlog >= MAX_BACKLOG_UNITS
            or self._backlog_bytes >= MAX_BACKLOG_BYTES
            or len(self._spool_writes) >= MAX_BACKLOG_SPOOL_WRITES
        )

    def pump(self, session: FeedSession) -> None:
        """Hand the session's spool writes and sealed units to their threads, in order (with
        ``spool_on_loop``, the spool writes are made before this returns)."""
        for op in session.take_spool_ops():
            if self._spool_on_loop:
                self._write_spool_op(op)
            else:
                self._spool_writes.append(self._spool_thread.submit(self._apply_spool_op, op))
        for item in session.take_sealed():
            held = item.held_bytes
            self._backlog_bytes += held
            self._writes.append((self._writer_thread.submit(self._publish, item), held))

    def _write_spool_op(self, op: SpoolOp) -> None:
        """On the loop: write now, sync later on the spool thread (``sync_spool``; a close
        syncs first, there)."""
        if type(op) is SpoolClose:
            self._spool_writes.append(self._spool_thread.submit(self._spool.close, op.unit_id))
            return
        try:
            self._apply_spool_op(op, sync=False)
        except OSError as exc:
            raise self._failed("spool", exc) from exc
        self._unsynced = True

    def sync_spool(self) -> None:
        """Queue an fdatasync of the spool writes made on the loop since the last one (unless
        one is queued and not started yet: it will cover them)."""
        if self._unsynced and not self._sync_pending:
            self._unsynced = False
            self._sync_pending = True
            self._spool_writes.append(self._spool_thread.submit(self._sync_spool))

    def _sync_spool(self) -> None:
        self._sync_pending = False  # before the sync: writes from now on are for the next
        self._spool.sync()

    def check(self) -> None:
        """Count what was written; raise ``ArchiveError`` for a write that failed."""
        while self._writes and self._writes[0][0].done():
            future, held = self._writes.popleft()
            self._backlog_bytes -= held
            self.files_written += self._result(future, "archive")
            self.units_written += 1
        while self._spool_writes and self._spool_writes[0].done():
            self._result(self._spool_writes.popleft(), "spool")
        units, flushes = len(self._writes), len(self._spool_writes)
        now = time.monotonic()
        lagging = units > _BACKLOG_WARN_UNITS or flushes > _BACKLOG_WARN_SPOOL_WRITES
        if lagging and now - self._backlog_warned > _BACKLOG_WARN_EVERY_S:
            self._backlog_warned = now
            log.warning(
                "the disk is falling behind (%d segments to write, %d spool flushes pending); "
                "still reading the feed",
                units,
                flushes,
            )

    async def drain(self, session: FeedSession, now_us: int) -> None:
        """Archive what is held, seal the open unit and wait for every write; raise if one
        failed."""
        session.finish(now_us)
        empty = session.seal(now_us)
        self.pump(session)
        self._spool_thread.submit(self._spool.discard, empty.unit_id)
        writes = [future for future, _ in self._writes]
        await asyncio.gather(*(asyncio.wrap_future(f) for f in writes), return_exceptions=True)
        # Deletes of sealed spools were queued by the writes: let the spool thread finish them.
        await asyncio.to_thread(self._spool_thread.shutdown, True)
        self._writer_thread.shutdown(wait=True)
        self._spool.close_all()
        self.check()

    def _result(self, future: Future[T], what: str) -> T:
        exc = future.exception()
        if exc is not None:
            raise self._failed(what, exc) from exc
        return future.result()

    def _failed(self, what: str, exc: BaseException) -> ArchiveError:
        return ArchiveError(
            f"cannot write the {what} in {self._layout.root}: {exc}; frames already "
            "spooled are recovered when the recorder starts again"
        )

    def _apply_spool_op(self, op: SpoolOp, sync: bool = True) -> None:
        """One spool write; without ``sync``, made durable later (``sync_spool``)."""
        if type(op) is SpoolAppend:
            self._spool.append(op.unit_id, op.records, sync=sync)
        elif type(op) is SpoolOpen:
            self._spool.open(op.unit_id, op.header, sync=sync)
        elif type(op) is SpoolClose:
            self._spool.close(op.unit_id)

    def _publish(self, item: Unit | RawChunk) -> int:
        written = self._segments.write(item)
        if self._published is not None and written:
            self._published(written)
        if isinstance(item, Unit):
            # Submitted after this unit's close, so the spool thread deletes a closed file.
            self._spool_thread.submit(self._spool.delete, item.unit_id)
        return len(written)
