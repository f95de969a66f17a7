"""``Recorder``: tails the feed into an archive; the I/O shell around ``FeedSession``.

The event loop only receives frames and hands them to the session. Spool writes run on one
thread and segment writes on another, so a slow disk shows up as a logged backlog, never as a
feed the recorder stopped reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from replica.recorder import __version__
from replica.recorder.feedurl import check_url, is_loopback, public_url, with_api_key
from replica.recorder.policy import Action, Backoff, BackoffPolicy, after_close, after_rejection
from replica.recorder.segments import publish_unit
from replica.recorder.session import (
    FeedSession,
    RecentPayloads,
    SessionStats,
    SpoolAppend,
    SpoolClose,
    SpoolOpen,
    Unit,
)
from replica.recorder.spool import SpoolWriter
from replica.recorder.startup import archived_tail, recover_spools, remove_temporary_files
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import (
    ArchiveError,
    AuthRefused,
    NothingRecorded,
    ReplicaError,
    UsageError,
)
from replica.schemas.lock import ArchiveLock
from replica.schemas.metadata import RECORDER_KEY, SOURCE_KEY
from replica.schemas.redact import RedactingLogger, redact
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

log = logging.getLogger(__name__)

MAINTENANCE_US = 50_000  # spool flush cadence: frames reach disk well within 100 ms
MAX_FRAME_BYTES = 64 * 2**20
_BACKLOG_WARN_UNITS = 2
_BACKLOG_WARN_SPOOL_WRITES = 20  # about a second of flushes not yet on disk
_BACKLOG_WARN_EVERY_S = 30.0


@dataclass(frozen=True, kw_only=True)
class RecorderConfig:
    url: str
    archive: str | os.PathLike[str]
    api_key: str | None = field(default=None, repr=False)
    auth: str = "header"  # or "query": the key goes in the URL, where proxies may log it
    segment_seconds: float = 60.0
    segment_rows: int = 500_000
    status_seconds: float = 5.0
    deadline: datetime | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    # How long to wait for the peer's close frame before dropping the connection: a dead peer
    # never sends one, and every second spent waiting is feed not recorded.
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.auth not in ("header", "query"):
            raise UsageError(f"auth {self.auth!r} is not one of 'header', 'query'")
        if self.auth == "query" and not self.api_key:
            raise UsageError("--auth query needs an API key to send")
        for name in ("segment_seconds", "segment_rows", "status_seconds"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name} must be positive, was {getattr(self, name)}")
        if self.deadline is not None and self.deadline.tzinfo is None:
            raise UsageError("deadline must be timezone-aware")


@dataclass
class Summary:
    """The one JSON line a cron log keeps of a run."""

    archive: str
    source: str
    started: str
    ended: str
    ended_by: str
    exit_code: int
    frames: int
    appended: int
    first_seq: int | None
    last_seq: int | None
    duplicates: int
    conflicts: int
    quarantined: int
    gaps: int
    missing: int
    connections: int
    files_written: int
    recovered_frames: int
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def _now_us() -> int:
    return time.time_ns() // 1000


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Recorder:
    """Records until ``stop()``, the config's deadline, or a refused key.

    ``await run()`` returns the run's ``Summary``; it raises ``AuthRefused``, ``ArchiveLocked``
    or ``ArchiveError`` when the run cannot go on, after sealing what it has received, and
    ``NothingRecorded`` when the deadline came before any new command.
    ``summary()`` describes the run in either case.
    """

    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self._layout = ArchiveLayout(Path(config.archive))
        self._source = public_url(config.url)
        self._metadata = {RECORDER_KEY: __version__, SOURCE_KEY: self._source}
        self._session: FeedSession | None = None
        self._stop_reason: str | None = None
        self._stopping: asyncio.Event | None = None
        self._failure: ReplicaError | None = None
        self._ws: ClientConnection | None = None
        self._attempt: asyncio.Task | None = None
        self._closing: asyncio.Future | None = None
        self._started = time.time()
        self._ended: float | None = None
        self._files_written = 0
        self._recovered_frames = 0
        self._writes: deque[Future] = deque()
        self._spool_writes: deque[Future] = deque()
        self._spool: SpoolWriter | None = None
        self._spool_thread: ThreadPoolExecutor | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._next_maintenance = 0
        self._next_status = 0.0
        self._status_at = time.monotonic()
        self._status_frames = 0
        self._backlog_warned = -math.inf

    # ---- public -------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int | None:
        return self._session.tracker.state.last_seq if self._session else None

    def stop(self, reason: str = "stop") -> None:
        """End the run cleanly: close the connection, seal, and return from ``run()``."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._stopping is None:
            return
        self._stopping.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())
        elif self._attempt is not None:
            self._attempt.cancel()

    async def run(self) -> Summary:
        self._stopping = asyncio.Event()
        if self._stop_reason is not None:
            self._stopping.set()
        lock = ArchiveLock(self._layout.lock_path)
        try:
            lock.acquire()
            await self._run_locked()
        except ReplicaError as exc:
            self._failure = exc
            raise
        finally:
            lock.release()
            self._ended = time.time()
        return self.summary()

    def summary(self) -> Summary:
        stats = self._session.stats if self._session else SessionStats()
        failure = self._failure
        return Summary(
            archive=str(self._layout.root),
            source=self._source,
            started=_iso(self._started),
            ended=_iso(self._ended or time.time()),
            ended_by=type(failure).__name__ if failure else (self._stop_reason or "stop"),
            exit_code=failure.exit_code if failure else 0,
            frames=stats.frames,
            appended=stats.appended,
            first_seq=stats.first_seq,
            last_seq=self.last_seq,
            duplicates=stats.duplicates,
            conflicts=stats.conflicts,
            quarantined=stats.quarantined,
            gaps=stats.gaps,
            missing=stats.missing,
            connections=stats.connections,
            files_written=self._files_written,
            recovered_frames=self._recovered_frames,
            error=str(failure) if failure else None,
        )

    # ---- lifecycle ----------------------------------------------------------------------------

    async def _run_locked(self) -> None:
        config = self.config
        if config.auth == "query":
            log.warning(
                "--auth query puts the API key in the URL, where proxies and access "
                "logs may record it; prefer the x-api-key header"
            )
        state, recent = await asyncio.to_thread(self._prepare_archive)
        if not config.api_key:  # said once: every refusal after this is the same one
            loopback = is_loopback(urlsplit(config.url).hostname or "")
            log.log(
                logging.INFO if loopback else logging.WARNING,
                "no API key set (REPLICA_API_KEY or --api-key-file): connecting to %s without one",
                self._source,
            )
        self._session = FeedSession(
            state,
            now_us=_now_us(),
            recent=recent,
            segment_rows=config.segment_rows,
            segment_us=int(config.segment_seconds * 1e6),
        )
        self._spool = SpoolWriter(self._layout.spool_dir)
        self._spool_thread = ThreadPoolExecutor(1, "replica-spool")
        self._writer_thread = ThreadPoolExecutor(1, "replica-writer")
        loop = asyncio.get_running_loop()
        deadline = None
        if config.deadline is not None:
            delay = max(0.0, config.deadline.timestamp() - time.time())
            deadline = loop.call_later(delay, self.stop, "deadline")
        self._status_at = time.monotonic()
        self._next_status = self._status_at + config.status_seconds
        ticker = asyncio.create_task(self._tick_forever())
        ticker.add_done_callback(self._ticker_ended)
        try:
            self._pump()
            await self._connect_until_stopped()
        finally:
            ticker.cancel()
            if deadline is not None:
                deadline.cancel()
            await self._seal_and_drain()
        if self._failure is None and self._stop_reason == "deadline":
            self._failure = self._nothing_recorded()
        if self._failure is not None:
            raise self._failure

    def _nothing_recorded(self) -> NothingRecorded | None:
        """A window that recorded nothing is a failure, however cleanly it ended."""
        stats = self._session.stats if self._session else SessionStats()
        if stats.appended:
            return None
        if not stats.connections:
            return NothingRecorded(
                f"the recording window ended without connecting to {self._source}: nothing recorded"
            )
        return NothingRecorded(
            f"the recording window ended with no new command from {self._source} "
            f"({stats.connections} connection(s)): nothing recorded"
        )

    def _prepare_archive(self):
        layout = self._layout
        try:
            layout.root.mkdir(parents=True, exist_ok=True)
            for table_dir in (layout.raw_dir, layout.gaps_dir, layout.quarantine_dir):
                table_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot use the archive {layout.root}: {exc}") from exc
        remove_temporary_files(layout)
        recent = RecentPayloads()
        state = archived_tail(layout, recent)  # also seeds duplicate checks for the recovery
        recovery = recover_spools(layout, recent, self._metadata)
        if recovery.spools:
            log.info(
                "recovered %d frames from %d spool file(s) into %d file(s)",
                recovery.frames,
                recovery.spools,
                len(recovery.files),
            )
        self._recovered_frames = recovery.frames
        self._files_written += len(recovery.files)
        if recovery.files:  # the recovery moved the archive's end
            state = archived_tail(layout, recent)
        if state.last_seq is not None:
            log.info("resuming %s after seq %d", layout.root, state.last_seq)
        return state, recent

    async def _seal_and_drain(self) -> None:
        if self._session is None:
            return
        empty = self._session.seal(_now_us())
        self._pump()
        self._spool_thread.submit(self._spool.discard, empty.unit_id)
        writes = list(self._writes)
        await asyncio.gather(*(asyncio.wrap_future(f) for f in writes), return_exceptions=True)
        # Deletes of sealed spools were queued by the writes: let the spool thread finish them.
        await asyncio.to_thread(self._spool_thread.shutdown, True)
        self._writer_thread.shutdown(wait=True)
        self._spool.close_all()
        self._check_writes()

    # ---- the connection loop ------------------------------------------------------------------

    async def _connect_until_stopped(self) -> None:
        backoff = Backoff(self.config.backoff)
        while not self._stopping.is_set():
            self._attempt = asyncio.ensure_future(self._one_connection())
            try:
                action, why, healthy = await self._attempt
            except asyncio.CancelledError:
                if self._stopping.is_set() and self._attempt.cancelled():
                    return
                raise
            finally:
                self._attempt = None
            if self._stopping.is_set():
                return
            if action is Action.STOP:
                advice = (
                    "check that the API key is valid and entitled to the Disk-Sync feed"
                    if self.config.api_key
                    else "no API key was sent: set REPLICA_API_KEY or give --api-key-file"
                )
                raise AuthRefused(f"authentication was refused by {self._source} ({why}); {advice}")
            if healthy:
                backoff.reset()
            delay = 0.0 if action is Action.RECONNECT_NOW else backoff.next_delay()
            log.warning("connection ended (%s); reconnecting in %.1f s", why, delay)
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _one_connection(self) -> tuple[Action, str, bool]:
        """One connection from connect to close: returns what to do next, why, and whether it
        delivered new commands (only that resets the backoff)."""
        session = self._session
        appended_before = session.stats.appended
        try:
            async with self._connect() as ws:
                self._ws = ws
                session.connection_opened(_now_us())
                log.info("connected to %s", self._source)
                if self._stopping.is_set():
                    await ws.close()
                receive = session.receive
                async for frame in ws:
                    now = time.time_ns() // 1000
                    receive(frame, now)
                    if now >= self._next_maintenance:
                        self._maintain(now)
            code = ws.close_code
            why = f"closed with code {code}"
        except InvalidStatus as exc:
            status = exc.response.status_code
            return after_rejection(status), f"HTTP {status} on the upgrade", False
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            why = f"closed with code {code}" if code else "connection dropped"
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            code, why = (
                None,
                f"cannot connect: {redact(str(exc), self.config.api_key) or type(exc).__name__}",
            )
        finally:
            self._ws = None
        healthy = session.stats.appended > appended_before
        return after_close(code, healthy=healthy), why, healthy

    def _connect(self) -> connect:
        config = self.config
        url, headers = config.url, {}
        if config.api_key and config.auth == "query":
            url = with_api_key(url, config.api_key)
        elif config.api_key:
            headers["x-api-key"] = config.api_key
        return connect(
            url,
            additional_headers=headers,
            user_agent_header=f"replica/{__version__}",
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            close_timeout=config.close_timeout,
            max_size=MAX_FRAME_BYTES,
            proxy=None if is_loopback(urlsplit(url).hostname or "") else True,
            logger=RedactingLogger(logging.getLogger("websockets.client"), config.api_key),
        )

    # ---- maintenance: spool flushes, time seals, errors, status -------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_US / 1e6)
            self._maintain(_now_us())

    def _ticker_ended(self, ticker: asyncio.Task) -> None:
        """Without the ticker a quiet feed's frames would sit unflushed: end the run instead."""
        if not ticker.cancelled() and ticker.exception() is not None:
            self._failure = ReplicaError(
                f"the recorder's maintenance failed: {ticker.exception()!r}"
            )
            self.stop("error")

    def _maintain(self, now_us: int) -> None:
        self._next_maintenance = now_us + MAINTENANCE_US
        self._session.tick(now_us)
        self._pump()
        try:
            self._check_writes()
        except ArchiveError as exc:
            self._failure = exc
            self.stop("error")
            return
        if time.monotonic() >= self._next_status:
            self._log_status()

    def _pump(self) -> None:
        """Hand the session's spool writes and sealed units to their threads, in order."""
        session = self._session
        for op in session.take_spool_ops():
            self._spool_writes.append(self._spool_thread.submit(self._apply_spool_op, op))
        for unit in session.take_sealed():
            self._writes.append(self._writer_thread.submit(self._publish, unit))

    def _apply_spool_op(self, op) -> None:
        if type(op) is SpoolAppend:
            self._spool.append(op.unit_id, op.records)
        elif type(op) is SpoolOpen:
            self._spool.open(op.unit_id, op.header)
        elif type(op) is SpoolClose:
            self._spool.close(op.unit_id)

    def _publish(self, unit: Unit) -> int:
        written = publish_unit(unit, self._layout, self._metadata)
        # Submitted after this unit's close, so the spool thread deletes a closed file.
        self._spool_thread.submit(self._spool.delete, unit.unit_id)
        return len(written)

    def _check_writes(self) -> None:
        for queue, what in ((self._writes, "archive"), (self._spool_writes, "spool")):
            while queue and queue[0].done():
                future = queue.popleft()
                exc = future.exception()
                if exc is not None:
                    raise ArchiveError(
                        f"cannot write the {what} in {self._layout.root}: {exc}; frames already "
                        "spooled are recovered when the recorder starts again"
                    ) from exc
                if queue is self._writes:
                    self._files_written += future.result()
        units, flushes = len(self._writes), len(self._spool_writes)
        now = time.monotonic()
        behind = units > _BACKLOG_WARN_UNITS or flushes > _BACKLOG_WARN_SPOOL_WRITES
        if behind and now - self._backlog_warned > _BACKLOG_WARN_EVERY_S:
            self._backlog_warned = now
            log.warning(
                "the disk is falling behind (%d segments to write, %d spool flushes pending); "
                "still reading the feed",
                units,
                flushes,
            )

    def _log_status(self) -> None:
        stats = self._session.stats
        now = time.monotonic()
        rate = (stats.frames - self._status_frames) / max(now - self._status_at, 1e-6)
        self._next_status = now + self.config.status_seconds
        self._status_at, self._status_frames = now, stats.frames
        lag = f"{stats.last_lag_us / 1000:.1f} ms" if stats.last_lag_us is not None else "-"
        log.info(
            "%.0f msg/s | last seq %s | gaps %d (%d missing) | duplicates %d | quarantined %d "
            "| lag %s | writer backlog %d",
            rate,
            self.last_seq,
            stats.gaps,
            stats.missing,
            stats.duplicates,
            stats.quarantined,
            lag,
            len(self._writes),
        )
