"""When each command is due: the replay's pacing, as arithmetic on archived timestamps.

Sans-I/O: no clock is read and nothing sleeps here. A command is due ``(t - t0) / speed``
after the first one, t being its timestamp on the chosen clock and t0 the first command's, so
the schedule is absolute: a late send does not delay the next one, and lateness never
accumulates. A timestamp that goes backwards is held at the highest one seen so far: that
command is due at once (a wait of zero, never negative), and those after it keep their
original distance from t0.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from replica.schemas.errors import UsageError

# The timestamp columns a schedule can follow, with their units per second.
CLOCKS = {
    "ts_ms": 1_000,
    "ingest_ts_us": 1_000_000,
    "publish_ts_us": 1_000_000,
    "recv_ts_us": 1_000_000,
}


# The slowest pace: a second of the feed takes 11.6 days. Slower is no replay, only a way to
# hold a connection; a wait at this speed can still be centuries long, which pacing handles.
MIN_SPEED = 1e-6


def check_speed(speed: float) -> float:
    """A pace multiplier of at least ``MIN_SPEED``."""
    number = isinstance(speed, int | float) and not isinstance(speed, bool)
    if not (number and MIN_SPEED <= speed <= sys.float_info.max):  # refuses nan and inf too
        raise UsageError(
            f"speed must be a number of at least {MIN_SPEED:g}, or None (max), was {speed!r}"
        )
    return float(speed)


def parse_speed(text: str) -> float | None:
    """``max``, or a number of at least ``MIN_SPEED`` such as ``1``, ``10`` or ``0.5``."""
    if text.strip().lower() == "max":
        return None
    try:
        return check_speed(float(text))
    except (ValueError, UsageError):
        raise UsageError(
            f"speed {text!r} is not a number of at least {MIN_SPEED:g} or max; "
            "use e.g. 1, 10, 0.5 or max"
        ) from None


def check_clock(clock: str) -> str:
    if clock not in CLOCKS:
        raise UsageError(
            f"clock {clock!r} is not a timestamp column; use one of {', '.join(CLOCKS)}"
        )
    return clock


class Schedule:
    def __init__(self, speed: float, clock: str) -> None:
        self._units_per_s = CLOCKS[check_clock(clock)] * check_speed(speed)
        self._origin: int | None = None
        self._highest = 0

    def offsets(self, times: Iterable[int]) -> list[float]:
        """Seconds after the first command at which each of the next commands is due."""
        origin, highest, units_per_s = self._origin, self._highest, self._units_per_s
        due = []
        for t in times:
            if origin is None:
                origin = highest = t
            elif t > highest:
                highest = t
            due.append((highest - origin) / units_per_s)
        self._origin, self._highest = origin, highest
        return due
