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

A deadline can be centuries away (a slow speed across a long pause in the feed), further than
the platform can sleep in one call (``time_t``, and a lock's ``TIMEOUT_MAX``): every wait sleeps
in slices of at most ``LONGEST_SLEEP_S`` and re-checks the clock, so no deadline can raise.
Nothing a connection hands the shared timer can stop it: its deadline only orders the heap, a
closed loop is skipped, and a wait cancelled (its connection closed) leaves the heap at once,
so it keeps neither the future nor its loop alive until a deadline that may never come.
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
LONGEST_SLEEP_S = 3600.0  # one sleep at most: far below what any platform can sleep in one call


class Pacer:
    def __init__(self, *, precise: bool = False) -> None:
        self.precise = precise

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def wait_until(self, deadline: float) -> None:
        if not self.precise:
            _sleep_until(deadline)
            return
        _sleep_until(deadline - _SPIN_S)
        while time.monotonic() < deadline:
            os.sched_yield()

    async def wait_until_async(self, deadline: float) -> None:
        if not self.precise:
            if deadline - time.monotonic() > 0:
                await _TIMER.wait(deadline)
            return
        while (remaining := deadline - _ASYNC_SPIN_S - time.monotonic()) > 0:
            await asyncio.sleep(min(remaining, LONGEST_SLEEP_S))
        while time.monotonic() < deadline:
            os.sched_yield()


def _sleep_until(deadline: float) -> None:
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, LONGEST_SLEEP_S))


class _TimerThread:
    """Resolves asyncio futures at monotonic deadlines, from one daemon thread for all loops."""

    def __init__(self) -> None:
        self._due = threading.Condition()
        self._heap: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    async def wait(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        entry = (deadline, next(self._order), loop, future)
        with self._due:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="replay-timer", daemon=True)
                self._thread.start()
            self._due.notify()
        try:
            await future
        except asyncio.CancelledError:
            with self._due, contextlib.suppress(ValueError):  # ValueError: popped already
                self._heap.remove(entry)
                heapq.heapify(self._heap)
            raise

    def _run(self) -> None:
        with self._due:
            while True:
                if not self._heap:
                    self._due.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._due.wait(min(delay, LONGEST_SLEEP_S))
                    continue
                _, _, loop, future = heapq.heappop(self._heap)
                with contextlib.suppress(RuntimeError):  # its loop closed while it waited
                    loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled wait is done already
        future.set_result(None)


_TIMER = _TimerThread()
