"""``Recorder``: tails the feed into an archive; the I/O shell around ``FeedSession``.

The event loop only receives frames and hands them to the session. Spool writes run on one
thread and segment writes on another (``Writers``), so a slow disk shows up as a logged backlog;
only a backlog past its memory bound pauses reading the feed until the writer catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from replica.recorder import __version__
from replica.recorder.config import NO_KEY, RecorderConfig, Summary, iso_time, nothing_recorded
from replica.recorder.connection import RedirectRefused, open_feed
from replica.recorder.feedurl import is_loopback, public_url
from replica.recorder.policy import Action, Backoff, after_close, after_rejection
from replica.recorder.quarantine import MAX_UNIT_QUARANTINE_BYTES, TooBig
from replica.recorder.relay import OnArchived, Relay
from replica.recorder.seq import TrackerState
from replica.recorder.session import CHUNK_BYTES, FeedSession
from replica.recorder.startup import prepare_archive
from replica.recorder.status import WARN_EVERY_S, StatusLog
from replica.recorder.units import RecentPayloads, SessionStats
from replica.recorder.upload import Uploader
from replica.recorder.writers import Writers
from replica.schemas.archive import RAW_ROW_GROUP_ROWS, ArchiveLayout
from replica.schemas.errors import ArchiveError, AuthRefused, ReplicaError
from replica.schemas.lock import ArchiveLock
from replica.schemas.metadata import RECORDER_KEY, SOURCE_KEY
from replica.schemas.redact import redact
from replica.schemas.storage import locate
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    PayloadTooBig,
)

__all__ = ["Recorder", "RecorderConfig", "Summary"]  # the config and summary live in config.py

log = logging.getLogger(__name__)

MAINTENANCE_US = 50_000  # spool flush cadence: frames reach disk well within 100 ms


def _now_us() -> int:
    return time.time_ns() // 1000


def _too_big(exc: PayloadTooBig) -> TooBig:
    """The size websockets saw: a frame's declared length (plus the message's earlier
    fragments), or for a compressed frame only the limit its inflated size passed."""
    if exc.size is None:
        return TooBig(exc.max_size, exact=False)
    return TooBig(exc.size + (exc.current_size or 0), exact=True)


class _Endpoint:
    """One URL's connection: its index in the session, its open socket, its pending attempt."""

    def __init__(self, index: int, url: str) -> None:
        self.index = index
        self.url = url
        self.source = public_url(url)
        self.ws: ClientConnection | None = None
        self.attempt: asyncio.Future[tuple[Action, str, bool]] | None = None


class _Run:
    """What exists only while ``run()`` does: the archive's session, its writers, the event
    that ends the run."""

    def __init__(self, session: FeedSession, writers: Writers) -> None:
        self.session = session
        self.writers = writers
        self.stopping = asyncio.Event()


class Recorder:
    """Records until ``stop()``, the config's deadline, or a refused key.

    ``await run()`` returns the run's ``Summary``; it raises ``AuthRefused``, ``ArchiveLocked``
    or ``ArchiveError`` when the run cannot go on, after sealing what it has received, and
    ``NothingRecorded`` when the deadline came before any new command.
    ``summary()`` describes the run in either case. ``on_archived``, when given, is called on
    the event loop with each batch of archived commands once they are on the spool (a relay).
    """

    def __init__(self, config: RecorderConfig, on_archived: OnArchived | None = None) -> None:
        self.config = config
        self._relay = None if on_archived is None else Relay(on_archived)
        self._layout = ArchiveLayout(Path(config.archive))
        # Recording to a store: the layout is the local staging archive, uploaded from.
        self._store = locate(config.store, config.endpoint_url) if config.store else None
        self._uploader: Uploader | None = None
        self._endpoints = [_Endpoint(index, url) for index, url in enumerate(config.urls)]
        self._source = " ".join(endpoint.source for endpoint in self._endpoints)
        self._metadata: dict[bytes, str] = {
            RECORDER_KEY: __version__,
            SOURCE_KEY: self._source,
        }
        self._run: _Run | None = None
        self._stop_reason: str | None = None
        self._failure: ReplicaError | None = None
        self._closing: list[asyncio.Future[None]] = []
        self._started = time.time()
        self._ended: float | None = None
        self._recovered_files = 0
        self._recovered_frames = 0
        self._next_maintenance = 0
        self._relay_scheduled = False  # a relay pump is queued for the end of this burst
        self._status = StatusLog(config.status_seconds)
        self._pause_warned = -math.inf
        # Called at each maintenance with the session, before its sealed units go to the
        # writer: what metrics need of every appended row, off the per-frame path.
        self.on_maintenance: Callable[[FeedSession], None] | None = None

    # ---- public -------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int | None:
        return self._run.session.tracker.state.last_seq if self._run else None

    @property
    def writer_backlog(self) -> int:
        """Sealed segments waiting to be written."""
        return self._run.writers.backlog if self._run else 0

    @property
    def session(self) -> FeedSession | None:
        """The running session, whose counters the status line and metrics read."""
        return self._run.session if self._run else None

    @property
    def writers(self) -> Writers | None:
        return self._run.writers if self._run else None

    @property
    def endpoints_up(self) -> list[bool]:
        """Whether each endpoint's connection is open now."""
        return [endpoint.ws is not None for endpoint in self._endpoints]

    def stop(self, reason: str = "stop") -> None:
        """End the run cleanly: close the connections, seal, and return from ``run()``."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._run is None:
            return
        self._run.stopping.set()
        for endpoint in self._endpoints:
            if endpoint.ws is not None:
                self._closing.append(asyncio.ensure_future(endpoint.ws.close()))
            elif endpoint.attempt is not None:
                endpoint.attempt.cancel()

    async def run(self) -> Summary:
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
        session = self._run.session if self._run else None
        stats = session.stats if session else SessionStats()
        failure = self._failure
        return Summary(
            archive=self._store.url if self._store else str(self._layout.root),
            source=self._source,
            started=iso_time(self._started),
            ended=iso_time(self._ended or time.time()),
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
            ts_back=stats.ts_back,
            files_written=self._recovered_files
            + (self._run.writers.files_written if self._run else 0),
            recovered_frames=self._recovered_frames,
            error=str(failure) if failure else None,
            endpoints=[vars(totals).copy() for totals in session.totals] if session else [],
            uploads_waiting=self._uploader.waiting if self._uploader else None,
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
            quiet = all(is_loopback(urlsplit(url).hostname or "") for url in config.urls)
            log.log(logging.INFO if quiet else logging.WARNING, NO_KEY, self._source)
        session = FeedSession(
            state,
            now_us=_now_us(),
            recent=recent,
            segment_rows=config.segment_rows,
            segment_us=int(config.segment_seconds * 1e6),
            quarantine_bytes=MAX_UNIT_QUARANTINE_BYTES,
            endpoints=tuple(endpoint.source for endpoint in self._endpoints),
            gap_wait_us=int(config.gap_wait * 1e6),
            arrivals=config.arrivals,
            chunk_rows=RAW_ROW_GROUP_ROWS,
            chunk_bytes=CHUNK_BYTES,
        )
        uploader = self._uploader = (
            Uploader(self._layout, self._store, config.upload_backoff) if self._store else None
        )
        if uploader is not None:
            await asyncio.to_thread(uploader.start)
        published = uploader.add if uploader else None
        writers = Writers(
            self._layout, self._metadata, published, spool_on_loop=self._relay is not None
        )
        run = self._run = _Run(session, writers)
        if self._stop_reason is not None:
            run.stopping.set()
        loop = asyncio.get_running_loop()
        deadline = None
        if config.deadline is not None:
            delay = max(0.0, config.deadline.timestamp() - time.time())
            deadline = loop.call_later(delay, self.stop, "deadline")
        self._status.start()
        ticker = asyncio.create_task(self._tick_forever(run))
        ticker.add_done_callback(self._ticker_ended)
        try:
            run.writers.pump(session)
            await self._connect_all(run)
        finally:
            ticker.cancel()
            if deadline is not None:
                deadline.cancel()
            try:
                await run.writers.drain(session, _now_us())
            finally:
                if uploader is not None:
                    await asyncio.to_thread(uploader.finish)
        if self._failure is None and self._stop_reason == "deadline":
            self._failure = nothing_recorded(session.stats, self._source)
        if self._failure is not None:
            raise self._failure

    def _prepare_archive(self) -> tuple[TrackerState, RecentPayloads]:
        state, recent, recovery = prepare_archive(self._layout, self._metadata, self._store)
        self._recovered_frames = recovery.frames
        self._recovered_files = len(recovery.files)
        return state, recent

    # ---- the connection loops -----------------------------------------------------------------

    async def _connect_all(self, run: _Run) -> None:
        """One connection loop per endpoint; the first that cannot go on ends them all."""
        loops = [
            asyncio.ensure_future(self._connect_until_stopped(run, endpoint))
            for endpoint in self._endpoints
        ]
        try:
            for done in asyncio.as_completed(loops):
                try:
                    await done
                except AuthRefused as exc:
                    self._failure = self._failure or exc
                    self.stop("error")
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _connect_until_stopped(self, run: _Run, endpoint: _Endpoint) -> None:
        backoff = Backoff(self.config.backoff)
        while not run.stopping.is_set():
            attempt = endpoint.attempt = asyncio.ensure_future(self._one_connection(run, endpoint))
            try:
                action, why, healthy = await attempt
            except asyncio.CancelledError:
                if run.stopping.is_set() and attempt.cancelled():
                    return
                raise
            finally:
                endpoint.attempt = None
            run.session.connection_closed(_now_us(), endpoint.index, why)
            if run.stopping.is_set():
                return
            if action is Action.STOP:
                advice = (
                    "check that the API key is valid and entitled to the Disk-Sync feed"
                    if self.config.api_key
                    else "no API key was sent: set REPLICA_API_KEY or give --api-key-file"
                )
                raise AuthRefused(
                    f"authentication was refused by {endpoint.source} ({why}); {advice}"
                )
            if healthy:
                backoff.reset()
            delay = 0.0 if action is Action.RECONNECT_NOW else backoff.next_delay()
            to = f" to {endpoint.source}" if len(self._endpoints) > 1 else ""
            log.warning("connection%s ended (%s); reconnecting in %.1f s", to, why, delay)
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.stopping.wait(), delay)

    async def _one_connection(self, run: _Run, endpoint: _Endpoint) -> tuple[Action, str, bool]:
        """One connection from connect to close: returns what to do next, why, and whether it
        delivered new commands (only that resets the backoff)."""
        session, writers, index = run.session, run.writers, endpoint.index
        totals = session.totals[index]
        # Only new commands count as healthy (reset the backoff): archived from this endpoint,
        # or with several endpoints delivered by it at all (the other may have been first).
        several = len(self._endpoints) > 1
        progress_before = totals.delivered if several else totals.won
        code: int | None
        try:
            async with self._connect(endpoint.url) as ws:
                endpoint.ws = ws
                session.connection_opened(_now_us(), index)
                log.info("connected to %s", endpoint.source)
                if run.stopping.is_set():
                    await ws.close()
                receive = session.receive
                sealed = session.sealed  # a list the session appends each sealed unit to
                relay = self._relay is not None
                async for frame in ws:
                    now = time.time_ns() // 1000
                    receive(frame, now, index)
                    if relay and not self._relay_scheduled:
                        self._relay_soon(run)
                    if now >= self._next_maintenance or sealed:
                        self._maintain(run, now)
                        if writers.behind:
                            await self._wait_for_the_writer(run)
            code = ws.close_code
            why = f"closed with code {code}"
        except InvalidStatus as exc:
            status = exc.response.status_code
            return after_rejection(status), f"HTTP {status} on the upgrade", False
        except RedirectRefused as exc:
            return Action.BACKOFF, str(exc), False
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            why = f"closed with code {code}" if code else "connection dropped"
            if isinstance(exc.__cause__, PayloadTooBig):
                too_big = _too_big(exc.__cause__)
                session.frame_too_big(too_big, _now_us(), index)
                why = f"{too_big.reason}; quarantined its size"
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            code, why = (
                None,
                f"cannot connect: {redact(str(exc), self.config.api_key) or type(exc).__name__}",
            )
        finally:
            endpoint.ws = None
        healthy = (totals.delivered if several else totals.won) > progress_before
        return after_close(code, healthy=healthy), why, healthy

    def _connect(self, url: str) -> connect:
        config = self.config
        return open_feed(
            url,
            api_key=config.api_key,
            auth=config.auth,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            close_timeout=config.close_timeout,
        )

    # ---- maintenance: spool flushes, time seals, errors, status -------------------------------

    async def _tick_forever(self, run: _Run) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_US / 1e6)
            self._maintain(run, _now_us())

    def _ticker_ended(self, ticker: asyncio.Task[None]) -> None:
        """Without the ticker a quiet feed's frames would sit unflushed: end the run instead."""
        if not ticker.cancelled() and ticker.exception() is not None:
            self._failure = ReplicaError(
                f"the recorder's maintenance failed: {ticker.exception()!r}"
            )
            self.stop("error")

    def _maintain(self, run: _Run, now_us: int) -> None:
        self._next_maintenance = now_us + MAINTENANCE_US
        run.session.tick(now_us)
        if self.on_maintenance is not None:
            self.on_maintenance(run.session)
        try:
            if self._relay is None:
                run.writers.pump(run.session)
            else:
                self._relay.pump(run.session, run.writers)
                run.writers.sync_spool()  # the relay's writes, durable at the plain cadence
            run.writers.check()
        except ArchiveError as exc:
            self._failure = exc
            self.stop("error")
            return
        waiting = self._uploader.waiting if self._uploader else None
        self._status.due(run.session, self.endpoints_up, run.writers.backlog, waiting)

    def _relay_soon(self, run: _Run) -> None:
        """Pumps the relay once the receive loop has taken every frame that had arrived: the
        callback runs in the loop's next turn, before any frame received after this one, so a
        burst is spooled and relayed as one batch, at once."""
        self._relay_scheduled = True
        asyncio.get_running_loop().call_soon(self._relay_now, run)

    def _relay_now(self, run: _Run) -> None:
        self._relay_scheduled = False
        assert self._relay is not None
        try:
            self._relay.pump(run.session, run.writers)
        except ArchiveError as exc:
            self._failure = exc
            self.stop("error")

    async def _wait_for_the_writer(self, run: _Run) -> None:
        """Stop reading the feed while the writer is too far behind (the ticker goes on
        checking its writes), so that units waiting for the disk cannot exhaust memory."""
        now = time.monotonic()
        if now - self._pause_warned > WARN_EVERY_S:
            self._pause_warned = now
            log.warning(
                "the disk is %d segments (%.0f MiB) behind; pausing reads of the feed until it "
                "catches up",
                run.writers.backlog,
                run.writers.backlog_bytes / 2**20,
            )
        while run.writers.behind and not run.stopping.is_set():
            await asyncio.sleep(MAINTENANCE_US / 1e6)
