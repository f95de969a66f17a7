"""Resuming an archive: the state after its last command, read without loading whole files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.recorder.seq import Cause, TrackerState
from replica.recorder.session import RecentPayloads
from replica.recorder.startup import _last_rows, archived_tail
from replica.schemas.archive import RAW_SCHEMA, ArchiveLayout, hour_of

TS_MS = 1_795_132_800_000


def raw(first: int, count: int) -> pa.Table:
    seqs = list(range(first, first + count))
    return pa.Table.from_pydict(
        {
            "seq": seqs,
            "ts_ms": [TS_MS + s for s in seqs],
            "ingest_ts_us": [0] * count,
            "publish_ts_us": [0] * count,
            "recv_ts_us": [0] * count,
            "raw": [b"p%d" % s for s in seqs],
        },
        schema=RAW_SCHEMA,
    )


def test_only_the_row_groups_holding_the_last_rows_are_read(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(raw(0, 95), path, row_group_size=10)
    assert _last_rows(path, 15).column("seq").to_pylist() == list(range(80, 95))
    assert _last_rows(path, 5).num_rows == 5
    assert _last_rows(path, 1000).num_rows == 95


def test_archived_tail_resumes_after_the_highest_seq_and_seeds_duplicate_checks(
    tmp_path: Path,
) -> None:
    layout = ArchiveLayout(tmp_path)
    for first in (0, 100):
        path = layout.segment_path(first, first + 49, hour_of(TS_MS))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(raw(first, 50), path, row_group_size=8)
    recent = RecentPayloads(size=16)
    state = archived_tail(layout, recent)
    assert state == TrackerState(149, TS_MS + 149, Cause.RESTART)
    assert recent.lookup(149) == b"p149" and recent.lookup(134) == b"p134"
    assert recent.lookup(100) is None, "older than the window"


def test_an_empty_archive_starts_with_no_state(tmp_path: Path) -> None:
    assert archived_tail(ArchiveLayout(tmp_path), RecentPayloads()) == TrackerState()
