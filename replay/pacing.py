"""Waiting until a command is due: the replay's one contact with time.

Deadlines are absolute readings of the monotonic clock (the schedule's offsets plus the moment
the replay started), so oversleeping one wait shortens the next. ``time.sleep`` wakes about
0.1 ms after its deadline on Linux; ``asyncio.sleep`` rounds up to the event loop's
millisecond, so it is about 0.5 ms late on average and up to 1 ms. ``precise`` sleeps until
shortly before the deadline and spins on the clock for the rest: microseconds, at the cost of a
busy core (and, in asyncio, of an event loop that runs nothing else while it spins). Each turn
of the spin yields the CPU and the GIL, so the thread reading ahead is not starved meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import time

_SPIN_S = 0.001  # what a precise sync wait spins: well above time.sleep's lateness
_ASYNC_SPIN_S = 0.002  # what a precise async wait spins: above asyncio.sleep's lateness


class Pacer:
    def __init__(self, *, precise: bool = False) -> None:
        self.precise = precise

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def wait_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if not self.precise:
            if remaining > 0:
                time.sleep(remaining)
            return
        if remaining > _SPIN_S:
            time.sleep(remaining - _SPIN_S)
        while time.monotonic() < deadline:
            os.sched_yield()

    async def wait_until_async(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if not self.precise:
            if remaining > 0:
                await asyncio.sleep(remaining)
            return
        if remaining > _ASYNC_SPIN_S:
            await asyncio.sleep(remaining - _ASYNC_SPIN_S)
        while time.monotonic() < deadline:
            os.sched_yield()
