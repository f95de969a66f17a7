"""What the recorder logs while it runs: the periodic status line and the rate-limited warning
of a feed clock that stepped back. State kept here so the recorder's loop only calls ``due``."""

from __future__ import annotations

import logging
import math
import time

from replica.recorder.session import FeedSession

# The recorder's own logger: a status line reads as the recorder's, wherever it is built.
log = logging.getLogger("replica.recorder.recorder")

WARN_EVERY_S = 30.0


class StatusLog:
    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._at = time.monotonic()
        self._next = self._at + every_s
        self._frames = 0
        self._ts_back_warned = (0, -math.inf)  # the count when last logged, and when

    def start(self) -> None:
        self._at = time.monotonic()
        self._next = self._at + self._every_s

    def due(
        self,
        session: FeedSession,
        up: list[bool],
        writer_backlog: int,
        uploads_waiting: int | None = None,
    ) -> None:
        """Log the status line if it is time (``up``: each endpoint's connection is open;
        ``uploads_waiting``: recording to a store, the sealed files not uploaded yet), and
        warn of commands filed under a later hour than their ts_ms's."""
        if time.monotonic() >= self._next:
            self._status(session, up, writer_backlog, uploads_waiting)
        self._warn_of_ts_back(session.stats.ts_back)

    def _warn_of_ts_back(self, count: int) -> None:
        logged, when = self._ts_back_warned
        now = time.monotonic()
        if count > logged and now - when > WARN_EVERY_S:
            self._ts_back_warned = (count, now)
            log.warning(
                "%d command(s) so far had a ts_ms in an earlier UTC hour than the segment they "
                "arrived in (the feed's clock stepped back); they stay in that segment, filed "
                "under its hour",
                count,
            )

    def _status(
        self,
        session: FeedSession,
        up: list[bool],
        writer_backlog: int,
        uploads_waiting: int | None,
    ) -> None:
        stats = session.stats
        now = time.monotonic()
        rate = (stats.frames - self._frames) / max(now - self._at, 1e-6)
        self._next = now + self._every_s
        self._at, self._frames = now, stats.frames
        lag = f"{stats.last_lag_us / 1000:.1f} ms" if stats.last_lag_us is not None else "-"
        endpoints = ""
        if len(up) > 1:
            each = (
                f"{t.endpoint} {'up' if is_up else 'down'} won {t.won}/{t.delivered}"
                for t, is_up in zip(session.totals, up, strict=True)
            )
            endpoints = f" | {', '.join(each)} | held {session.held}"
        if uploads_waiting is not None:
            endpoints = f" | waiting to upload {uploads_waiting}{endpoints}"
        log.info(
            "%.0f msg/s | last seq %s | gaps %d (%d missing) | duplicates %d | quarantined %d "
            "| lag %s | writer backlog %d%s",
            rate,
            session.tracker.state.last_seq,
            stats.gaps,
            stats.missing,
            stats.duplicates,
            stats.quarantined,
            lag,
            writer_backlog,
            endpoints,
        )
