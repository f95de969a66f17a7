"""Pacing: the schedule's arithmetic (sans-I/O, with hypothesis) and replays paced against a
virtual clock, so that "speed 10 takes a tenth of speed 1" is checked exactly, without
sleeping and without timing anything.
"""

from __future__ import annotations

import asyncio
import math
import time
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from replica.replay.pacing import _TIMER, Pacer
from replica.replay.records import ReplayRecord
from replica.replay.schedule import Schedule, parse_speed
from replica.replay.selection import Selection
from replica.replay.stream import Replay
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import UsageError

from tests.conftest import PATIENCE_S
from tests.replayarchives import record_fixture_feed, rows_for, write_segments

timestamps = st.lists(st.integers(0, 2**53), min_size=1, max_size=200)
speeds = st.floats(min_value=1e-3, max_value=1e6)


class VirtualClock:
    """A monotonic clock that moves only when waited on, and oversleeps each wait by a fixed
    amount, the way a loaded machine does."""

    def __init__(self, oversleep: float = 0.0) -> None:
        self.t = 1_000.0
        self.oversleep = oversleep
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    def wait_until(self, deadline: float) -> None:
        self.waits.append(deadline - self.t)
        self.t = max(self.t, deadline) + self.oversleep

    async def wait_until_async(self, deadline: float) -> None:
        self.wait_until(deadline)


@pytest.fixture(scope="module")
def fixture_archive(tmp_path_factory: pytest.TempPathFactory) -> ArchiveLayout:
    return ArchiveLayout(record_fixture_feed(tmp_path_factory.mktemp("replay") / "archive"))


def paced(layout: ArchiveLayout, speed: float, virtual: VirtualClock, **kwargs) -> list:
    """(virtual time at which each record was yielded, record)."""
    replay = Replay(layout, Selection(), speed=speed, pacer=virtual, **kwargs)
    return [(virtual.now(), item) for item in replay if isinstance(item, ReplayRecord)]


# ---- the schedule ----------------------------------------------------------------------------


@given(timestamps, speeds)
def test_the_schedule_never_waits_a_negative_time(times: list[int], speed: float) -> None:
    due = Schedule(speed, "ts_ms").offsets(times)
    assert due[0] == 0.0
    assert all(0 <= a <= b for a, b in pairwise(due))


@given(timestamps, speeds, st.integers(1, 50))
def test_the_schedule_is_absolute_from_the_first_command(
    times: list[int], speed: float, batch: int
) -> None:
    """Offsets depend only on the timestamps seen, not on how they were batched, and a
    timestamp at or above all before it is due exactly (t - t0) / speed after the first."""
    schedule = Schedule(speed, "ingest_ts_us")
    due = []
    for i in range(0, len(times), batch):
        due += schedule.offsets(times[i : i + batch])
    assert due == Schedule(speed, "ingest_ts_us").offsets(times)
    highest = times[0]
    for t, offset in zip(times, due, strict=True):
        if t >= highest:
            assert math.isclose(offset, (t - times[0]) / 1e6 / speed, rel_tol=1e-12)
        highest = max(highest, t)


def test_a_timestamp_that_goes_back_is_due_at_once_and_the_rest_keep_their_time() -> None:
    assert Schedule(1, "ts_ms").offsets([1000, 1500, 1200, 1600, 2000]) == [0, 0.5, 0.5, 0.6, 1.0]
    assert Schedule(2, "ts_ms").offsets([1000, 900, 1400]) == [0, 0, 0.2]


@pytest.mark.parametrize(
    ("text", "speed"), [("1", 1.0), ("10", 10.0), ("0.5", 0.5), ("max", None), ("MAX", None)]
)
def test_speeds_parse(text: str, speed: float | None) -> None:
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "1e400", "1e-12", "fast", ""])
def test_bad_speeds_name_what_is_valid(text: str) -> None:
    with pytest.raises(UsageError, match="is not a number of at least 1e-06 or max"):
        parse_speed(text)


# ---- replays against a virtual clock ---------------------------------------------------------


def test_speed_10_takes_a_tenth_of_speed_1(fixture_archive: ArchiveLayout) -> None:
    slow, fast = VirtualClock(), VirtualClock()
    at_1, at_10 = paced(fixture_archive, 1, slow), paced(fixture_archive, 10, fast)
    span_s = (at_1[-1][1].ts_ms - at_1[0][1].ts_ms) / 1000
    assert span_s > 200  # the fixture feed spans minutes
    assert math.isclose(slow.t - 1_000, span_s, rel_tol=1e-9)
    assert math.isclose(fast.t - 1_000, span_s / 10, rel_tol=1e-9)
    assert [r for _, r in at_1] != [r for _, r in at_10]  # scheduled_s differ...
    assert [r[:6] for _, r in at_1] == [r[:6] for _, r in at_10]  # ...the commands do not
    assert all(w >= 0 for w in slow.waits + fast.waits)


def test_commands_are_never_early_and_lateness_does_not_accumulate(
    fixture_archive: ArchiveLayout,
) -> None:
    clock = VirtualClock(oversleep=0.004)  # every wait ends 4 ms late
    yielded = paced(fixture_archive, 1, clock)
    start = yielded[0][0]
    lateness = [t - (start + r.scheduled_s) for t, r in yielded]
    assert min(lateness) >= 0
    assert max(lateness) <= 0.004 + 1e-9  # one oversleep, never the sum of them
    assert len(clock.waits) > 2000


def test_the_async_variant_keeps_the_same_schedule(fixture_archive: ArchiveLayout) -> None:
    clock = VirtualClock()

    async def collect() -> list:
        replay = Replay(fixture_archive, Selection(), speed=10, pacer=clock)
        return [(clock.now(), item) async for item in replay if isinstance(item, ReplayRecord)]

    got = asyncio.run(collect())
    assert [(t, r) for t, r in got] == paced(fixture_archive, 10, VirtualClock())


def test_another_clock_column_drives_the_schedule(tmp_path: Path) -> None:
    rows = rows_for(list(range(4)))
    for i, row in enumerate(rows):
        row["recv_ts_us"] = 5_000_000 + [0, 300_000, 100_000, 900_000][i]  # back, then on
    write_segments(tmp_path, rows)
    clock = VirtualClock()
    yielded = paced(ArchiveLayout(tmp_path), 1, clock, clock="recv_ts_us")
    assert [r.scheduled_s for _, r in yielded] == [0.0, 0.3, 0.3, 0.9]
    assert [round(t - 1_000, 9) for t, _ in yielded] == [0.0, 0.3, 0.3, 0.9]


def test_the_transform_runs_before_the_wait_and_gaps_pass_through(tmp_path: Path) -> None:
    write_segments(tmp_path, rows_for([0, 1, 5]))
    clock, ran_at = VirtualClock(), []

    def transform(record: ReplayRecord) -> str:
        ran_at.append(clock.now())
        return f"decoded {record.seq}"

    replay = Replay(ArchiveLayout(tmp_path), Selection(), speed=1, pacer=clock, transform=transform)
    items = [item if isinstance(item, str) else tuple(item) for item in replay]
    assert items == ["decoded 0", "decoded 1", (2, 4, 3, None), "decoded 5"]
    assert [round(t - 1_000, 9) for t in ran_at] == [0.0, 0.0, 0.01]  # before each wait


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_precise_wait_never_returns_before_its_deadline(mode: str) -> None:
    pacer = Pacer(precise=True)
    for delay in (0.0, 0.0005, 0.003):
        deadline = time.monotonic() + delay
        if mode == "sync":
            pacer.wait_until(deadline)
        else:
            asyncio.run(pacer.wait_until_async(deadline))
        assert time.monotonic() >= deadline


def test_async_waits_share_one_timer_and_none_wakes_early() -> None:
    """Async waits are woken by a timer thread, not the event loop's millisecond timeouts:
    several at once, across event loops, each after its own deadline, and a cancelled wait
    leaves the others alone."""
    pacer = Pacer()

    async def waits(delays: list[float]) -> list[tuple[float, float]]:
        async def one(delay: float) -> tuple[float, float]:
            deadline = time.monotonic() + delay
            await pacer.wait_until_async(deadline)
            return deadline, time.monotonic()

        abandoned = asyncio.ensure_future(pacer.wait_until_async(time.monotonic() + 0.002))
        results = asyncio.gather(*(one(d) for d in delays))
        await asyncio.sleep(0)
        abandoned.cancel()
        return await results

    for _ in range(2):  # a second event loop finds the timer thread already running
        woken = asyncio.run(waits([0.004, 0.0, 0.001, 0.003, 0.0005]))
        assert all(at >= deadline for deadline, at in woken)


def test_a_wait_of_centuries_neither_stops_the_timer_nor_outlives_its_cancel() -> None:
    """A wait 30,000 years long, longer than a lock can wait in one call, once killed the
    shared timer thread. Now the waits queued after it are woken on time, and once it is
    cancelled (its client left) it leaves the timer's queue at once, loop and all."""
    pacer = Pacer()

    async def main() -> tuple[int, int]:
        far = asyncio.ensure_future(pacer.wait_until_async(time.monotonic() + 1e12))
        await asyncio.sleep(0.01)  # the timer thread now sleeps toward it
        await asyncio.wait_for(pacer.wait_until_async(time.monotonic() + 0.001), PATIENCE_S)
        queued = len(_TIMER._heap)
        far.cancel()
        await asyncio.wait([far])
        return queued, len(_TIMER._heap)

    queued, left = asyncio.run(main())
    assert queued >= 1 and left == queued - 1
