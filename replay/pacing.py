"""Waiting until a command is due: the replay's one contact with time.

Deadlines are absolute readings of the monotonic clock (the schedule's offsets plus the moment
the replay started), so oversleeping one wait shortens the next. ``time.sleep`` wakes about
0.1 ms after its deadline on Linux. ``asyncio.sleep`` rounds up to the event loop's
millisecond (epoll's timeout unit), so it is about 0.5 ms late on average and up to 1 ms;
async waits are therefore timed by one shared thread that sleeps on a condition variable to
the nearest deadline and wakes the waiting loop through its self-pipe, about 0.1 ms late, with
no busy core. ``precise`` sleeps until
shortly before the deadline and spins on the clock for the rest: microseconds, at the cost of a
busy core (and, in asyncio, of an event loop that runs nothing else while it spins). Each turn
of the spin yields the CPU and the GIL, so the thread reading ahead is not starved meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import threading
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
                await _TIMER.wait(deadline)
            return
        if remaining > _ASYNC_SPIN_S:
            await asyncio.sleep(remaining - _ASYNC_SPIN_S)
        while time.monotonic() < deadline:
            os.sched_yield()


class _TimerThread:
    """Resolves asyncio futures at monotonic deadlines, from one daemon thread for all loops."""

    def __init__(self) -> None:
        self._due = threading.Condition()
        self._heap: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def wait(self, deadline: float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._due:
            heapq.heappush(self._heap, (deadline, next(self._order), loop, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="replay-timer", daemon=True)
                self._thread.start()
            self._due.notify()
        return future

    def _run(self) -> None:
        with self._due:
            while True:
                if not self._heap:
                    self._due.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._due.wait(delay)
                    continue
                _, _, loop, future = heapq.heappop(self._heap)
                with contextlib.suppress(RuntimeError):  # its loop closed while it waited
                    loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():  # a cancelled wait is done already
        future.set_result(None)


_TIMER = _TimerThread()
