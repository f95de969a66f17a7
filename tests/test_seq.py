"""``recorder.seq``: what each seq means (next command, duplicate, end of a gap) and why seqs went
missing.

The archive's promise rests on these invariants, so they are checked as properties over arbitrary
seq streams with reconnects: appended seqs strictly increase, anything at or below the last seq
is a duplicate, appended seqs and gaps together tile the seq range exactly, each gap has the
right cause and ``before_ts_ms``, and the tracker's state survives its JSON form (the spool
header), so a tracker resumed from it decides exactly as the original would have.
"""

from __future__ import annotations

import json
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from replica.recorder.seq import APPEND, DUPLICATE, Cause, Gap, SeqTracker, TrackerState

PROPERTY = settings(max_examples=400, deadline=None, database=None)
RECONNECT = ("reconnect",)

events = st.lists(
    st.one_of(
        st.tuples(st.just("seq"), st.integers(0, 60), st.integers(0, 2**45)),
        st.just(RECONNECT),
    ),
    max_size=60,
)


@st.composite
def states(draw) -> TrackerState:
    pending = draw(st.sampled_from([None, Cause.RECONNECT, Cause.RESTART]))
    if draw(st.booleans()):
        return TrackerState(None, None, pending)
    return TrackerState(draw(st.integers(0, 40)), draw(st.integers(0, 2**45)), pending)


def through_json(state: TrackerState) -> TrackerState:
    return TrackerState.from_json(json.loads(json.dumps(state.to_json())))


def copy(state: TrackerState) -> TrackerState:
    return TrackerState(state.last_seq, state.last_ts_ms, state.pending)


def run(tracker: SeqTracker, stream: list[tuple]) -> list[str | Gap | None]:
    verdicts = []
    for event in stream:
        if event == RECONNECT:
            tracker.connection_opened()
            verdicts.append(None)
        else:
            verdicts.append(tracker.observe(event[1], event[2]))
    return verdicts


# ---- examples ---------------------------------------------------------------------------------


def test_first_seq_ever_is_appended_without_a_gap():
    tracker = SeqTracker(TrackerState())
    assert tracker.observe(1000, 5) == APPEND
    assert tracker.state == TrackerState(1000, 5, None)


def test_next_seq_is_appended():
    tracker = SeqTracker(TrackerState(7, 100))
    assert tracker.observe(8, 101) == APPEND


def test_jump_within_a_connection():
    tracker = SeqTracker(TrackerState(7, 100))
    assert tracker.observe(11, 130) == Gap(8, 10, Cause.JUMP, 100)
    assert Gap(8, 10, Cause.JUMP, 100).missing == 3


def test_gap_after_a_reconnect():
    tracker = SeqTracker(TrackerState(7, 100))
    tracker.connection_opened()
    assert tracker.observe(9, 130) == Gap(8, 8, Cause.RECONNECT, 100)


def test_reconnect_cause_ends_with_the_next_append():
    tracker = SeqTracker(TrackerState(7, 100))
    tracker.connection_opened()
    assert tracker.observe(8, 101) == APPEND
    assert tracker.observe(10, 102) == Gap(9, 9, Cause.JUMP, 101)


def test_duplicates_change_nothing():
    tracker = SeqTracker(TrackerState(7, 100, Cause.RECONNECT))
    assert tracker.observe(7, 999) == DUPLICATE
    assert tracker.observe(0, 999) == DUPLICATE
    assert tracker.state == TrackerState(7, 100, Cause.RECONNECT)


def test_restart_pending_survives_reconnects_until_the_first_append():
    tracker = SeqTracker(TrackerState(7, 100, Cause.RESTART))
    tracker.connection_opened()
    tracker.connection_opened()
    assert tracker.state.pending is Cause.RESTART
    assert tracker.observe(20, 200) == Gap(8, 19, Cause.RESTART, 100)
    tracker.connection_opened()
    assert tracker.observe(22, 201) == Gap(21, 21, Cause.RECONNECT, 200)


def test_state_json_is_plain_json():
    state = TrackerState(5, 6, Cause.RESTART)
    assert json.loads(json.dumps(state.to_json())) == {
        "last_seq": 5,
        "last_ts_ms": 6,
        "pending": "restart",
    }
    assert through_json(TrackerState()) == TrackerState()


# ---- properties -------------------------------------------------------------------------------


@PROPERTY
@given(states())
def test_state_round_trips_through_json(state):
    assert through_json(state) == state


@PROPERTY
@given(states(), events)
def test_verdicts_causes_and_state_follow_the_stream(initial, stream):
    tracker = SeqTracker(copy(initial))
    last, last_ts = initial.last_seq, initial.last_ts_ms
    restart = initial.pending is Cause.RESTART
    reconnected = initial.pending is Cause.RECONNECT
    for event in stream:
        if event == RECONNECT:
            tracker.connection_opened()
            reconnected = True
        else:
            _, seq, ts = event
            verdict = tracker.observe(seq, ts)
            if last is not None and seq <= last:
                assert verdict == DUPLICATE
            else:
                if last is None or seq == last + 1:
                    assert verdict == APPEND
                else:
                    cause = (
                        Cause.RESTART if restart else Cause.RECONNECT if reconnected else Cause.JUMP
                    )
                    assert verdict == Gap(last + 1, seq - 1, cause, last_ts)
                    assert verdict.missing == seq - last - 1
                last, last_ts, restart, reconnected = seq, ts, False, False
        pending = Cause.RESTART if restart else Cause.RECONNECT if reconnected else None
        assert tracker.state == TrackerState(last, last_ts, pending)


@PROPERTY
@given(states(), events)
def test_appended_seqs_and_gaps_tile_the_seq_range(initial, stream):
    tracker = SeqTracker(copy(initial))
    appended: list[int] = []
    gaps: list[Gap] = []
    for event, verdict in zip(stream, run(tracker, stream), strict=True):
        if event != RECONNECT and verdict != DUPLICATE:
            appended.append(event[1])
            if isinstance(verdict, Gap):
                gaps.append(verdict)
    assert all(a < b for a, b in pairwise(appended))
    if not appended:
        assert not gaps
        return
    start = appended[0] if initial.last_seq is None else initial.last_seq + 1
    covered = appended + [s for gap in gaps for s in range(gap.from_seq, gap.to_seq + 1)]
    assert len(covered) == len(set(covered))  # disjoint
    assert sorted(covered) == list(range(start, appended[-1] + 1))


@PROPERTY
@given(states(), events)
def test_every_seq_at_or_below_the_last_is_a_duplicate(initial, stream):
    tracker = SeqTracker(copy(initial))
    for event in stream:
        if event == RECONNECT:
            tracker.connection_opened()
            continue
        last = tracker.state.last_seq
        verdict = tracker.observe(event[1], event[2])
        assert (verdict == DUPLICATE) == (last is not None and event[1] <= last)


@PROPERTY
@given(states(), events, st.data())
def test_tracker_resumed_from_json_state_decides_the_same(initial, stream, data):
    cut = data.draw(st.integers(0, len(stream)))
    whole = run(SeqTracker(copy(initial)), stream)
    first = SeqTracker(copy(initial))
    head = run(first, stream[:cut])
    resumed = SeqTracker(through_json(first.state))
    assert head + run(resumed, stream[cut:]) == whole
