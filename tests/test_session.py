"""``recorder.session.FeedSession``: the recorder's protocol core, fed frame texts, no sockets.

Covered: commands land in the open unit with all their columns; units seal at the UTC hour of
``ts_ms``, by row count, by age (``recv_us``) and by ``tick`` on a quiet feed, and the frame that
causes a seal is spooled into the *new* unit (after the old unit's close and the new one's open);
duplicates are counted and not archived, conflicting ones are quarantined; bad frames are
quarantined with a capped text; gaps carry the right cause; stats add up.

The last property is the one crash recovery relies on: replaying one unit's spool records into
a fresh session built from that unit's spool header rebuilds exactly the unit the live session
sealed, whatever the stream (duplicates, gaps, bad frames, reconnects, ticks) and the live limits.
Only ``conflict`` rows may differ: a fresh ``RecentPayloads`` cannot know earlier units' payloads,
so the rebuilt unit's conflicts must be a subset of the live ones.
"""

from __future__ import annotations

import json
import re

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.recorder.frames import BadFrame, parse_frame
from replica.recorder.quarantine import (
    FRAME_TEXT_CAP,
    FULL_COPIES,
    MAX_UNIT_QUARANTINE_BYTES,
    QuarantineRow,
)
from replica.recorder.seq import Cause, Gap, TrackerState
from replica.recorder.session import (
    FeedSession,
    GapRow,
    RecentPayloads,
    SpoolAppend,
    SpoolClose,
    SpoolOpen,
    Unit,
    new_unit_id,
)
from replica.recorder.spool import decode_records, encode_records
from replica.schemas.archive import MS_PER_HOUR, hour_of
from replica.schemas.frames import command_frame

HOUR = MS_PER_HOUR
_COMPRESSOR = zstandard.ZstdCompressor(level=1)
BASE_MS = 490_000 * HOUR  # 2025-11-24T16:00Z, an hour boundary
T0 = BASE_MS * 1000  # recv clock, microseconds
GREETING = json.dumps({"type": "connected", "feed": "replica_cmds", "ts_ms": BASE_MS})


def payload(seq: int, variant: int = 0) -> bytes:
    return f"command {seq}/{variant}".encode()


def cmd(seq: int, ts_ms: int = BASE_MS, raw: bytes | None = None) -> str:
    return json.dumps(
        {
            "type": "replica_cmd",
            "seq": seq,
            "ts_ms": ts_ms,
            "ingest_ts_us": ts_ms * 1000 + 1,
            "publish_ts_us": ts_ms * 1000 + 2,
            "raw_hex": (payload(seq) if raw is None else raw).hex(),
        }
    )


def session(state: TrackerState | None = None, **limits) -> FeedSession:
    return FeedSession(
        state or TrackerState(), now_us=T0, recent=RecentPayloads(), unit_id="unit-0", **limits
    )


def feed(live: FeedSession, frames: list[str | bytes], start_us: int = T0 + 10) -> list[int]:
    """Receive ``frames`` 10 us apart; returns their recv times."""
    times = [start_us + 10 * i for i in range(len(frames))]
    for frame, recv_us in zip(frames, times, strict=True):
        live.receive(frame, recv_us)
    return times


def header(unit_id: str, opened_us: int, last_seq=None, last_ts_ms=None, pending=None) -> dict:
    state = {"last_seq": last_seq, "last_ts_ms": last_ts_ms, "pending": pending}
    return {"unit": unit_id, "opened_us": opened_us, "state": state}


# ---- appending --------------------------------------------------------------------------------


def test_session_opens_its_first_unit_with_the_tracker_state_header():
    live = session(TrackerState(9, BASE_MS, Cause.RESTART))
    assert live.take_spool_ops() == [
        SpoolOpen("unit-0", header("unit-0", T0, 9, BASE_MS, Cause.RESTART))
    ]
    assert live.open_unit.unit_id == "unit-0"
    assert live.open_unit.opened_us == T0


def test_commands_are_appended_with_all_columns():
    live = session()
    times = feed(live, [cmd(1, BASE_MS), cmd(2, BASE_MS + 5)])
    unit = live.open_unit
    assert list(unit.seq) == [1, 2]
    assert list(unit.ts_ms) == [BASE_MS, BASE_MS + 5]
    assert list(unit.ingest_ts_us) == [BASE_MS * 1000 + 1, (BASE_MS + 5) * 1000 + 1]
    assert list(unit.publish_ts_us) == [BASE_MS * 1000 + 2, (BASE_MS + 5) * 1000 + 2]
    assert list(unit.recv_ts_us) == times
    assert unit.raw == [payload(1), payload(2)]
    assert unit.hour == hour_of(BASE_MS)
    assert (unit.gaps, unit.quarantine.rows, unit.records) == ([], [], 2)


def test_every_frame_is_spooled_in_arrival_order_commands_decoded_connections_as_none():
    live = session()
    live.connection_opened(T0 + 1)
    frames = [GREETING, cmd(1), cmd(1), "junk", b"\x00"]
    times = feed(live, frames)
    ops = live.take_spool_ops()
    spooled = [GREETING, parse_frame(cmd(1)), parse_frame(cmd(1)), "junk", b"\x00"]
    assert ops[1:] == [SpoolAppend("unit-0", [(T0 + 1, None), *zip(times, spooled, strict=True)])]
    assert live.take_spool_ops() == []


def test_new_unit_ids_sort_by_time_and_are_unique():
    first, second = new_unit_id(123), new_unit_id(123)
    assert re.fullmatch(r"0{14}123-[0-9a-f]{8}", first)
    assert first != second
    assert new_unit_id(99) < new_unit_id(100) < new_unit_id(10**16)


def test_recent_payloads_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        RecentPayloads(size=12)


# ---- sealing ----------------------------------------------------------------------------------


def test_command_in_the_next_utc_hour_opens_a_new_unit_and_is_spooled_there():
    live = session()
    frames = [cmd(1, BASE_MS + HOUR - 2), cmd(2, BASE_MS + HOUR - 1), cmd(3, BASE_MS + HOUR)]
    t1, t2, t3 = feed(live, frames)
    ops = live.take_spool_ops()
    [old] = live.take_sealed()
    new = live.open_unit
    assert ops == [
        SpoolOpen("unit-0", header("unit-0", T0)),
        SpoolAppend("unit-0", [(t1, parse_frame(frames[0])), (t2, parse_frame(frames[1]))]),
        SpoolClose("unit-0"),
        SpoolOpen(new.unit_id, header(new.unit_id, t3, 2, BASE_MS + HOUR - 1)),
        SpoolAppend(new.unit_id, [(t3, parse_frame(frames[2]))]),
    ]
    assert (old.unit_id, old.hour, list(old.seq)) == ("unit-0", hour_of(BASE_MS), [1, 2])
    assert old.records == 2
    assert (new.hour, list(new.seq), new.opened_us) == (hour_of(BASE_MS) + 1, [3], t3)


def test_command_from_an_earlier_hour_stays_in_the_open_unit_and_is_counted():
    live = session()
    flapping = [BASE_MS + HOUR + seq if seq % 2 else BASE_MS + seq for seq in range(1, 1001)]
    feed(live, [cmd(seq, ts) for seq, ts in enumerate(flapping, start=1)])
    assert live.take_sealed() == [], "a clock flapping across the hour makes one unit"
    unit = live.open_unit
    assert (unit.hour, unit.rows, live.stats.ts_back) == (hour_of(BASE_MS) + 1, 1000, 500)


def test_seals_every_segment_rows_commands():
    live = session(segment_rows=2)
    feed(live, [cmd(seq) for seq in range(1, 6)])
    assert [list(unit.seq) for unit in live.take_sealed()] == [[1, 2], [3, 4]]
    assert list(live.open_unit.seq) == [5]


def test_seals_by_age_measured_in_recv_us_from_the_unit_opening():
    live = session(segment_us=1000)
    live.receive(cmd(1), T0 + 10)
    live.receive(cmd(2), T0 + 999)
    assert live.take_sealed() == []
    live.receive(cmd(3), T0 + 1000)
    [old] = live.take_sealed()
    assert (list(old.seq), list(live.open_unit.seq)) == ([1, 2], [3])
    assert live.open_unit.opened_us == T0 + 1000


def test_tick_seals_a_quiet_unit_once_it_has_aged():
    live = session(segment_us=1000)
    live.receive(cmd(1), T0 + 10)
    live.tick(T0 + 999)
    assert live.take_sealed() == []
    live.tick(T0 + 1000)
    [old] = live.take_sealed()
    assert list(old.seq) == [1]
    assert live.open_unit.opened_us == T0 + 1000
    ops = live.take_spool_ops()
    assert [type(op) for op in ops] == [SpoolOpen, SpoolAppend, SpoolClose, SpoolOpen]


def test_tick_never_seals_an_empty_unit():
    live = session(segment_us=1000)
    live.take_spool_ops()
    for now in (T0 + 1000, T0 + 10**9):
        live.tick(now)
    assert live.take_sealed() == []
    assert live.take_spool_ops() == []
    assert live.open_unit.unit_id == "unit-0"


def test_tick_seals_a_unit_holding_only_a_connection_marker():
    live = session(segment_us=1000)
    live.connection_opened(T0 + 1)
    live.tick(T0 + 1000)
    [old] = live.take_sealed()
    assert (old.records, old.rows) == (1, 0)


def test_explicit_seal_of_an_empty_unit_does_nothing():
    live = session()
    assert live.seal(T0 + 5) is live.open_unit
    assert live.take_sealed() == []
    assert live.open_unit.unit_id == "unit-0"


def test_without_limits_only_the_hour_seals():
    live = session()
    feed(live, [cmd(seq) for seq in range(1, 2000)], start_us=T0 + 10**12)
    assert live.take_sealed() == []
    assert live.open_unit.rows == 1999


def test_duplicates_bad_frames_and_greetings_never_seal():
    live = session(segment_rows=1, segment_us=1)
    feed(live, [cmd(5), cmd(4, BASE_MS + HOUR), cmd(5, BASE_MS + 3 * HOUR), "junk", GREETING])
    assert live.take_sealed() == []
    assert live.open_unit.records == 5


# ---- duplicates, bad frames, gaps ---------------------------------------------------------------


def test_duplicates_are_counted_and_not_appended():
    live = session()
    feed(live, [cmd(1), cmd(2), cmd(3), cmd(2), cmd(3), cmd(1)])
    unit = live.open_unit
    assert list(unit.seq) == [1, 2, 3]
    assert (live.stats.duplicates, live.stats.conflicts, live.stats.appended) == (3, 0, 3)
    assert unit.quarantine.rows == []
    assert unit.records == 6


def test_duplicate_with_a_different_payload_is_quarantined_as_a_conflict():
    live = session()
    conflicting = cmd(2, raw=b"something else")
    *_, recv_us = feed(live, [cmd(1), cmd(2), cmd(3), conflicting])
    [row] = live.open_unit.quarantine.rows
    assert (row.recv_ts_us, row.kind, row.seq) == (recv_us, "conflict", 2)
    canonical = command_frame(parse_frame(conflicting))  # the same in a live run and a recovery
    assert (row.frame, row.frame_bytes) == (canonical, len(canonical))
    assert row.reason.startswith("seq 2 repeated with a different payload")
    assert f"archived {len(payload(2))} bytes" in row.reason
    assert f"this frame {len(b'something else')} bytes" in row.reason
    assert list(live.open_unit.seq) == [1, 2, 3]
    stats = live.stats
    assert (stats.duplicates, stats.conflicts, stats.quarantined) == (1, 1, 1)


def test_duplicate_older_than_the_recent_window_cannot_be_compared():
    live = FeedSession(TrackerState(), now_us=T0, recent=RecentPayloads(size=4))
    feed(live, [*(cmd(seq) for seq in range(1, 11)), cmd(1, raw=b"other")])
    assert (live.stats.duplicates, live.stats.conflicts) == (1, 0)
    assert live.open_unit.quarantine.rows == []


def test_conflict_is_found_against_payloads_of_an_earlier_unit():
    recent = RecentPayloads()
    live = FeedSession(TrackerState(), now_us=T0, recent=recent, segment_rows=1)
    feed(live, [cmd(1), cmd(2), cmd(1, raw=b"other")])
    assert [row.kind for row in live.open_unit.quarantine.rows] == ["conflict"]
    assert recent.lookup(2) == payload(2)


BAD_FRAMES = [
    "not json",
    "[1]",
    json.dumps({"seq": 1}),
    json.dumps({"type": "heartbeat"}),
    json.dumps({**json.loads(cmd(1)), "raw_hex": "abc"}),
    json.dumps({**json.loads(cmd(1)), "raw_hex": "zz"}),
    json.dumps({**json.loads(cmd(1)), "seq": 1.5}),
    json.dumps({**json.loads(cmd(1)), "seq": -1}),
    json.dumps({**json.loads(cmd(1)), "ts_ms": 10**15}),
    "caf\u00e9 \ud83d",
]


@pytest.mark.parametrize("frame", BAD_FRAMES)
def test_bad_text_frame_is_quarantined_with_kind_reason_and_text(frame):
    with pytest.raises(BadFrame) as info:
        parse_frame(frame)
    live = session()
    live.receive(frame, T0 + 7)
    assert live.open_unit.quarantine.rows == [
        QuarantineRow(
            T0 + 7,
            info.value.kind,
            info.value.reason,
            None,
            frame,
            len(frame.encode("utf-8", "surrogatepass")),
        )
    ]
    assert (live.open_unit.rows, live.open_unit.records, live.stats.quarantined) == (0, 1, 1)


def test_binary_frame_is_quarantined_as_hex():
    live = session()
    live.receive(b"\x00\xffab", T0 + 7)
    [row] = live.open_unit.quarantine.rows
    assert (row.kind, row.seq, row.frame, row.frame_bytes) == ("binary", None, "0x00ff6162", 4)


def test_quarantined_text_is_capped_but_frame_bytes_is_the_full_size():
    live = session()
    long_text = "\u00e9" * (FRAME_TEXT_CAP + 10)
    live.receive(long_text, T0 + 7)
    [row] = live.open_unit.quarantine.rows
    assert row.frame == long_text[:FRAME_TEXT_CAP]
    assert row.frame_bytes == 2 * (FRAME_TEXT_CAP + 10)


def test_quarantined_binary_frame_keeps_its_full_size():
    live = session()
    live.receive(b"\x01" * (FRAME_TEXT_CAP + 10), T0 + 7)
    [row] = live.open_unit.quarantine.rows
    assert row.frame.startswith("0x0101")
    assert row.frame_bytes == FRAME_TEXT_CAP + 10


def test_quarantined_binary_frame_text_is_within_the_cap():
    live = session()
    live.receive(b"\x01" * (FRAME_TEXT_CAP + 10), T0 + 7)
    assert len(live.open_unit.quarantine.rows[0].frame) <= FRAME_TEXT_CAP


def test_quarantine_memory_is_bounded_by_sealing_and_by_storing_repeats_once():
    live = session(quarantine_bytes=MAX_UNIT_QUARANTINE_BYTES)
    for i in range(3000):
        frame = "{" + "x" * 65_535 if i % 2 else f"{{{i:05d}" + "y" * 65_530
        live.receive(frame, T0 + i)
    sealed = live.take_sealed()
    units = [*sealed, live.open_unit]
    # At most the bound plus the one row that reached it (a 64 KiB str takes 64 KiB + 49).
    assert max(u.quarantine.held_bytes for u in units) < MAX_UNIT_QUARANTINE_BYTES + 66_000
    assert len(sealed) >= 4 and sum(len(u.quarantine.rows) for u in units) == 3000
    assert live.stats.quarantined == 3000
    for unit in units:
        repeats = [row for row in unit.quarantine.rows if row.frame.startswith("{x")]
        assert len(repeats) == min(FULL_COPIES, len(repeats))
        rest = [row for row in unit.quarantine.rows if row.kind == "not_json" and not row.frame]
        assert all("identical to one stored in full" in row.reason for row in rest)
        assert all(row.frame_bytes == 65_536 for row in unit.quarantine.rows)


def test_gap_within_a_connection_is_a_jump():
    live = session()
    live.connection_opened(T0)
    *_, t5 = feed(live, [cmd(1, BASE_MS + 1), cmd(2, BASE_MS + 2), cmd(5, BASE_MS + 5)])
    assert live.open_unit.gaps == [GapRow(Gap(3, 4, Cause.JUMP, BASE_MS + 2), t5, BASE_MS + 5)]
    assert (live.stats.gaps, live.stats.missing) == (1, 2)
    assert list(live.open_unit.seq) == [1, 2, 5]


def test_gap_across_a_reconnect_is_a_reconnect():
    live = session()
    live.connection_opened(T0)
    feed(live, [cmd(1, BASE_MS + 1), cmd(2, BASE_MS + 2)])
    live.connection_opened(T0 + 100)
    live.receive(cmd(2, BASE_MS + 2), T0 + 110)  # the feed repeats what was already archived
    live.receive(cmd(6, BASE_MS + 6), T0 + 120)
    live.receive(cmd(8, BASE_MS + 8), T0 + 130)
    assert live.open_unit.gaps == [
        GapRow(Gap(3, 5, Cause.RECONNECT, BASE_MS + 2), T0 + 120, BASE_MS + 6),
        GapRow(Gap(7, 7, Cause.JUMP, BASE_MS + 6), T0 + 130, BASE_MS + 8),
    ]
    assert (live.stats.gaps, live.stats.missing, live.stats.duplicates) == (2, 4, 1)


def test_gap_after_a_restart_is_a_restart_even_after_a_reconnect():
    live = session(TrackerState(10, BASE_MS - 1, Cause.RESTART))
    live.connection_opened(T0)
    live.receive(cmd(15, BASE_MS + 3), T0 + 10)
    assert live.open_unit.gaps == [
        GapRow(Gap(11, 14, Cause.RESTART, BASE_MS - 1), T0 + 10, BASE_MS + 3)
    ]


def test_stats_add_up():
    live = session()
    live.connection_opened(T0)
    feed(live, [GREETING, cmd(1), cmd(2), cmd(4), cmd(2), "junk"])
    live.connection_opened(T0 + 100)
    live.receive(cmd(9, BASE_MS + 9), T0 + 200)
    stats = live.stats
    assert (stats.frames, stats.connections, stats.appended) == (7, 2, 4)
    assert (stats.duplicates, stats.conflicts, stats.quarantined) == (1, 0, 1)
    assert (stats.gaps, stats.missing, stats.first_seq) == (2, 5, 1)
    assert stats.last_lag_us == T0 + 200 - ((BASE_MS + 9) * 1000 + 2)


# ---- determinism: a unit replayed from its spool is the unit the live session sealed ------------

any_text = st.text(st.characters(exclude_categories=()), max_size=12)
commands = st.tuples(
    st.just("cmd"),
    st.sampled_from([1, 1, 1, 1, 2, 5, 0, -1, -3]),  # seq step: repeats are duplicates
    st.integers(0, 999),  # ms jitter on ts_ms, which crosses an hour every 5 seqs
    st.sampled_from([0, 0, 0, 1]),  # payload variant: 1 conflicts with an archived 0
)
events = st.lists(
    st.one_of(
        commands,
        commands,
        commands,
        st.tuples(st.just("bad"), st.one_of(any_text, st.binary(max_size=8))),
        st.tuples(st.just("bad"), st.sampled_from(BAD_FRAMES)),
        st.sampled_from([("connect",), ("greeting",), ("tick",), ("take_ops",)]),
    ),
    min_size=10,
    max_size=60,
)
initial_states = st.sampled_from(
    [TrackerState(), TrackerState(3, BASE_MS, Cause.RESTART), TrackerState(3, BASE_MS, None)]
)


def run_live(initial: TrackerState, stream, steps, rows: int, age_us: int):
    live = FeedSession(
        TrackerState(initial.last_seq, initial.last_ts_ms, initial.pending),
        now_us=T0,
        recent=RecentPayloads(),
        segment_rows=rows,
        segment_us=age_us,
        quarantine_bytes=1500,  # a few quarantined frames seal a unit
    )
    ops = []
    now, seq = T0, 10
    for event, step in zip(stream, steps, strict=True):
        now += step
        match event:
            case ("cmd", seq_step, jitter_ms, variant):
                seq = max(0, seq + seq_step)
                ts_ms = BASE_MS + seq * HOUR // 5 + jitter_ms
                live.receive(cmd(seq, ts_ms, payload(seq, variant)), now)
            case ("bad", frame):
                live.receive(frame, now)
            case ("connect",):
                live.connection_opened(now)
            case ("greeting",):
                live.receive(GREETING, now)
            case ("tick",):
                live.tick(now)
            case ("take_ops",):
                ops += live.take_spool_ops()
    live.seal(now + 1)
    ops += live.take_spool_ops()
    return ops, live.take_sealed()


def spooled_units(ops) -> dict[str, tuple[dict, list]]:
    """Each unit's header and records as recovery would read them back from its spool file."""
    units: dict[str, tuple[dict, list]] = {}
    closed: set[str] = set()
    for op in ops:
        if isinstance(op, SpoolOpen):
            assert op.unit_id not in units
            units[op.unit_id] = (json.loads(json.dumps(op.header)), [])
        elif isinstance(op, SpoolAppend):
            assert op.unit_id in units and op.unit_id not in closed
            encoded = encode_records(op.records, _COMPRESSOR)
            units[op.unit_id][1].extend(decode_records(encoded))
        else:
            assert isinstance(op, SpoolClose) and op.unit_id not in closed
            closed.add(op.unit_id)
    return units


def replay(header: dict, records: list) -> tuple[Unit, list]:
    rebuilt = FeedSession(
        TrackerState.from_json(header["state"]),
        now_us=header["opened_us"],
        recent=RecentPayloads(),
        unit_id=header["unit"],
    )
    rebuilt.replay(records)
    rebuilt.seal(header["opened_us"])
    ops = rebuilt.take_spool_ops()
    [unit] = rebuilt.take_sealed()
    return unit, ops


def conflicts(unit: Unit) -> list[QuarantineRow]:
    return [row for row in unit.quarantine.rows if row.kind == "conflict"]


def without_conflicts(unit: Unit) -> Unit:
    unit.quarantine = [row for row in unit.quarantine.rows if row.kind != "conflict"]
    return unit


@settings(max_examples=250, deadline=None, database=None)
@given(
    initial_states,
    events,
    st.lists(st.integers(0, 400), min_size=60, max_size=60),
    st.integers(1, 4),
)
def test_replaying_a_units_spool_rebuilds_the_live_unit(initial, stream, steps, rows):
    ops, sealed = run_live(initial, stream, steps[: len(stream)], rows, age_us=1000)
    units = spooled_units(ops)
    assert list(units)[: len(sealed)] == [unit.unit_id for unit in sealed]
    for live_unit in sealed:
        header, records = units[live_unit.unit_id]
        assert len(records) == live_unit.records
        rebuilt, rebuilt_ops = replay(header, records)
        assert rebuilt_ops[0] == SpoolOpen(live_unit.unit_id, header)
        # Conflicts with earlier units' payloads need the live RecentPayloads; the rest must match.
        assert set(conflicts(rebuilt)) <= set(conflicts(live_unit))
        assert without_conflicts(rebuilt) == without_conflicts(live_unit)


@settings(max_examples=150, deadline=None, database=None)
@given(initial_states, events, st.lists(st.integers(0, 400), min_size=60, max_size=60))
def test_sealed_units_respect_the_limits_and_never_overlap(initial, stream, steps):
    _, sealed = run_live(initial, stream, steps[: len(stream)], rows=3, age_us=1000)
    seqs = [seq for unit in sealed for seq in unit.seq]
    assert seqs == sorted(set(seqs))
    for unit in sealed:
        assert unit.records > 0
        assert unit.rows <= 3
        assert not unit.rows or hour_of(unit.ts_ms[0]) == unit.hour
        assert all(hour_of(ts) <= unit.hour for ts in unit.ts_ms)
