"""``FeedSession`` merging two endpoints of one feed, no sockets: random outage patterns.

Each endpoint delivers the seqs 0..n-1 in order, less a few random outages (optionally
reconnecting across them, as after a close 1011 or 1000), the two streams interleaved at random,
with random clock steps and ticks. Properties:

- with a wait longer than the run, the archive is exactly the union of what was delivered, in
  seq order, and the gaps are exactly the seqs neither endpoint delivered;
- with any wait, no seq is archived twice, archive and gaps partition the seq range, and only
  delivered seqs are archived;
- killed after any spool write (with any number of sealed units already published), recovery
  from the spool files archives exactly what reached the spool, each seq once.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.recorder.segments import publish_unit
from replica.recorder.seq import TrackerState
from replica.recorder.session import FeedSession
from replica.recorder.spool import SpoolWriter
from replica.recorder.startup import recover_spools
from replica.recorder.units import (
    Carried,
    RecentPayloads,
    SpoolAppend,
    SpoolClose,
    SpoolOp,
    SpoolOpen,
    Unit,
    Via,
)
from replica.schemas.archive import MS_PER_HOUR, ArchiveLayout

from tests.feedserver import frame

ENDPOINTS = ("ws://us.example/feed", "ws://jp.example/feed")
BASE_MS = 490_000 * MS_PER_HOUR
T0 = BASE_MS * 1000
FOREVER_US = 10**15


@dataclass
class Case:
    delivered: list[list[int]]
    order: list[int]
    steps: list[int]
    ticks: list[bool]
    reconnects: list[bool]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 40))
    delivered = []
    for _ in ENDPOINTS:
        outages = draw(st.lists(st.tuples(st.integers(0, n), st.integers(1, 10)), max_size=3))
        delivered.append([s for s in range(n) if not any(a <= s < a + k for a, k in outages)])
    order = draw(st.permutations([e for e, seqs in enumerate(delivered) for _ in seqs]))
    size = len(order)
    return Case(
        delivered,
        order,
        draw(st.lists(st.integers(0, 3_000), min_size=size, max_size=size)),
        draw(st.lists(st.booleans(), min_size=size, max_size=size)),
        draw(st.lists(st.booleans(), min_size=2, max_size=2)),
    )


def command_frame(seq: int) -> str:
    """Commands move into a new UTC hour every 7 seqs, so units seal while commands wait."""
    return frame(seq, ts_ms=BASE_MS + (seq // 7) * MS_PER_HOUR + seq)


def run_live(
    case: Case, gap_wait_us: int, rows: int
) -> tuple[list[SpoolOp], list[Unit], dict[str, int]]:
    """The spool operations, the sealed units, and for each unit the number of operations that
    were handed out with its seal: the recorder publishes a unit (and then deletes its spool, on
    the spool thread, after those operations) only once they are all queued."""
    session = FeedSession(
        TrackerState(),
        now_us=T0,
        recent=RecentPayloads(),
        segment_rows=rows,
        endpoints=ENDPOINTS,
        gap_wait_us=gap_wait_us,
        arrivals=True,
    )
    now = T0
    for endpoint in range(len(ENDPOINTS)):
        session.connection_opened(now, endpoint)
    position = [0, 0]
    ops: list[SpoolOp] = []
    units: list[Unit] = []
    queued: dict[str, int] = {}

    def pump() -> None:
        ops.extend(session.take_spool_ops())
        for unit in session.take_sealed():
            units.append(unit)
            queued[unit.unit_id] = len(ops)

    for endpoint, step, tick in zip(case.order, case.steps, case.ticks, strict=True):
        now += step
        seqs, at = case.delivered[endpoint], position[endpoint]
        if case.reconnects[endpoint] and at and seqs[at] != seqs[at - 1] + 1:
            session.connection_closed(now, endpoint, "closed with code 1011")
            session.connection_opened(now, endpoint)
        position[endpoint] += 1
        session.receive(command_frame(seqs[at]), now, endpoint)
        if tick:
            session.tick(now)
        pump()
    session.finish(now)
    session.seal(now)
    pump()
    return ops, units, queued


def archived(units: list[Unit]) -> list[int]:
    return [seq for unit in units for seq in unit.seq]


def gap_seqs(units: list[Unit]) -> list[int]:
    return [
        seq
        for unit in units
        for row in unit.gaps
        for seq in range(row.gap.from_seq, row.gap.to_seq + 1)
    ]


@settings(max_examples=300, deadline=None, database=None)
@given(cases(), st.integers(1, 5))
def test_with_time_to_wait_the_archive_is_the_union_and_gaps_what_neither_delivered(case, rows):
    _, units, _ = run_live(case, FOREVER_US, rows)
    union = set(case.delivered[0]) | set(case.delivered[1])
    assert archived(units) == sorted(union)
    if union:
        assert set(gap_seqs(units)) == set(range(min(union), max(union) + 1)) - union
    # Every delivery is an arrival row, whichever endpoint won it.
    arrivals = [
        (seq, ENDPOINTS[e])
        for u in units
        for seq, e in zip(u.arrival_seq, u.arrival_endpoint, strict=True)
    ]
    pairs = zip(ENDPOINTS, case.delivered, strict=True)
    assert sorted(arrivals) == sorted((s, url) for url, seqs in pairs for s in seqs)
    for unit in units:
        assert all(ts // MS_PER_HOUR == unit.hour for ts in unit.ts_ms)


@settings(max_examples=300, deadline=None, database=None)
@given(cases(), st.integers(0, 5_000), st.integers(1, 5))
def test_with_any_wait_each_seq_is_archived_once_or_a_gap(case, gap_wait_us, rows):
    _, units, _ = run_live(case, gap_wait_us, rows)
    seqs, gaps = archived(units), gap_seqs(units)
    assert seqs == sorted(set(seqs))
    assert set(seqs) <= set(case.delivered[0]) | set(case.delivered[1])
    assert not set(seqs) & set(gaps) and len(gaps) == len(set(gaps))
    if seqs:
        assert set(seqs) | set(gaps) == set(range(seqs[0], seqs[-1] + 1))


def spooled_seqs(ops: list[SpoolOp]) -> set[int]:
    seqs = set()
    for op in ops:
        for _, record in op.records if isinstance(op, SpoolAppend) else ():
            item = record.item if isinstance(record, Via) else record
            item = item.cmd if isinstance(item, Carried) else item
            if hasattr(item, "seq"):
                seqs.add(item.seq)
    return seqs


def write_spools(ops: list[SpoolOp], layout: ArchiveLayout, skip: set[str]) -> None:
    writer = SpoolWriter(layout.spool_dir)
    for op in ops:
        if op.unit_id in skip:
            continue
        if isinstance(op, SpoolOpen):
            writer.open(op.unit_id, op.header)
        elif isinstance(op, SpoolAppend):
            writer.append(op.unit_id, op.records)
        elif isinstance(op, SpoolClose):
            writer.close(op.unit_id)
    writer.close_all()


def archive_seqs(layout: ArchiveLayout) -> list[int]:
    seqs = []
    for segment in layout.segments():
        seqs += pq.read_table(segment.path, columns=["seq"]).column("seq").to_pylist()
    return seqs


@settings(max_examples=150, deadline=None, database=None)
@given(cases(), st.integers(1, 5), st.data())
def test_killed_after_any_spool_write_recovery_archives_what_was_spooled_once(case, rows, data):
    ops, units, queued = run_live(case, FOREVER_US, rows)
    cut = data.draw(st.integers(0, len(ops)))
    written = ops[:cut]
    closed = [unit.unit_id for unit in units if queued[unit.unit_id] <= cut]
    published = data.draw(st.integers(0, len(closed)))
    with tempfile.TemporaryDirectory() as tmp:
        layout = ArchiveLayout(Path(tmp))
        for table_dir in (layout.raw_dir, layout.gaps_dir, layout.quarantine_dir):
            table_dir.mkdir(parents=True)
        by_id = {unit.unit_id: unit for unit in units}
        for unit_id in closed[:published]:  # sealed, written, and its spool deleted
            publish_unit(by_id[unit_id], layout, {})
        write_spools(written, layout, set(closed[:published]))
        recover_spools(layout, RecentPayloads(), {})
        seqs = archive_seqs(layout)
        assert seqs == sorted(set(seqs))
        assert set(seqs) == spooled_seqs(written)
        if cut == len(ops):
            assert seqs == archived(units)


def test_another_endpoints_copy_with_other_timestamps_is_spooled_as_its_seq_and_still_checked():
    """The endpoints' bridges stamp their own ``publish_ts_us``, so the copies' texts differ: a
    copy with the same payload is spooled as its seq alone (its arrival is all the archive keeps
    of it), a different payload is still a conflict, and the spool rebuilds the same archive."""
    session = FeedSession(
        TrackerState(), now_us=T0, recent=RecentPayloads(), endpoints=ENDPOINTS, arrivals=True
    )
    for endpoint in range(len(ENDPOINTS)):
        session.connection_opened(T0, endpoint)
    jp = [json.loads(command_frame(seq)) for seq in range(4)]
    for copy in jp:
        copy["publish_ts_us"] += 7_000
    jp[2]["raw_hex"] = "00ff"
    now = T0
    for seq in range(4):
        session.receive(command_frame(seq), now := now + 10, 0)
        session.receive(json.dumps(jp[seq]), now := now + 10, 1)
    session.seal(now)
    ops = session.take_spool_ops()
    [unit] = session.take_sealed()
    records = [record for op in ops if isinstance(op, SpoolAppend) for _, record in op.records]
    jp_items = [r.item for r in records if isinstance(r, Via) and r.item is not None]
    assert [type(item).__name__ for item in jp_items] == ["Echo", "Echo", "Command", "Echo"]
    assert (session.stats.duplicates, session.stats.conflicts) == (4, 1)
    [row] = unit.quarantine.rows
    assert (row.kind, row.seq) == ("conflict", 2)
    assert sorted(zip(unit.arrival_seq, unit.arrival_endpoint, strict=True)) == [
        (seq, e) for seq in range(4) for e in (0, 1)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        layout = ArchiveLayout(Path(tmp))
        write_spools(ops, layout, set())
        recover_spools(layout, RecentPayloads(), {})
        assert archive_seqs(layout) == list(unit.seq) == [0, 1, 2, 3]
        arrivals = pq.read_table(Path(tmp) / "arrivals").sort_by([("seq", "ascending")])
        assert arrivals.column("seq").to_pylist() == [0, 0, 1, 1, 2, 2, 3, 3]
