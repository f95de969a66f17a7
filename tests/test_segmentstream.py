"""An open unit's rows go to the writer a row group at a time (``recorder.segmentstream``), so
the recorder holds a row group, not a segment: the session never holds more than ``chunk_rows``
rows, and the segment streamed chunk by chunk is the one a whole unit makes, under the same
name, with no temporary file left and none visible as a segment meanwhile."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from replica.recorder.segments import publish_unit
from replica.recorder.segmentstream import SegmentStreams
from replica.recorder.seq import TrackerState
from replica.recorder.session import FeedSession
from replica.recorder.units import RawChunk, RecentPayloads, Unit
from replica.schemas.archive import MS_PER_HOUR, ArchiveLayout

from tests.feedserver import frame

BASE_MS = 490_000 * MS_PER_HOUR
T0 = BASE_MS * 1000


def record(seqs: list[int], **limits: int) -> list[Unit | RawChunk]:
    """What the session hands the writer for these seqs (a new hour at seq 20)."""
    session = FeedSession(TrackerState(), now_us=T0, recent=RecentPayloads(), **limits)
    handed: list[Unit | RawChunk] = []
    for seq in seqs:
        ts_ms = BASE_MS + (MS_PER_HOUR if seq >= 20 else 0) + seq
        session.receive(frame(seq, ts_ms=ts_ms), T0 + seq)
        assert len(session.open_unit.raw) < limits.get("chunk_rows", 10**9)
        handed += session.take_sealed()
    session.seal(T0 + 100)
    return handed + session.take_sealed()


def layout_at(root: Path) -> ArchiveLayout:
    layout = ArchiveLayout(root)
    layout.raw_dir.mkdir(parents=True)
    return layout


def test_a_segment_streamed_in_chunks_is_the_segment_of_the_whole_unit(tmp_path: Path) -> None:
    seqs = list(range(1, 31))
    whole = layout_at(tmp_path / "whole")
    for unit in record(seqs):
        assert isinstance(unit, Unit)
        publish_unit(unit, whole, {})
    handed = record(seqs, chunk_rows=4)
    assert [type(item).__name__ for item in handed[:5]] == ["RawChunk"] * 4 + ["Unit"]
    streamed = layout_at(tmp_path / "streamed")
    streams = SegmentStreams(streamed, {})
    for item in handed:
        streams.write(item)
        assert [s.path.name for s in streamed.segments()] == [
            s.path.name for s in whole.segments()
        ][: sum(isinstance(i, Unit) for i in handed[: handed.index(item) + 1])]
    assert streamed.temporary_files() == []
    names = [s.path.relative_to(whole.root) for s in whole.segments()]
    assert names == [s.path.relative_to(streamed.root) for s in streamed.segments()]
    for name in names:
        assert pq.read_table(streamed.root / name).equals(pq.read_table(whole.root / name))
    first = pq.ParquetFile(streamed.root / names[0]).metadata
    assert [first.row_group(i).num_rows for i in range(first.num_row_groups)] == [4] * 4 + [3]


def test_a_chunk_by_payload_bytes_too(tmp_path: Path) -> None:
    handed = record(list(range(1, 11)), chunk_bytes=1)
    assert [type(item).__name__ for item in handed] == ["RawChunk"] * 10 + ["Unit"]
    layout = layout_at(tmp_path)
    streams = SegmentStreams(layout, {})
    for item in handed:
        streams.write(item)
    [segment] = layout.segments()
    assert pq.read_table(segment.path).column("seq").to_pylist() == list(range(1, 11))


def test_a_failed_chunk_write_fails_its_unit_and_publishes_no_partial_segment(
    tmp_path: Path,
) -> None:
    """A segment missing a chunk's rows must never be published (its spool would then be
    deleted with them): every later write of that unit fails too, and the spool is recovered
    at the next start."""
    handed = record(list(range(1, 11)), chunk_rows=4)  # chunk, chunk, unit
    layout = layout_at(tmp_path)
    hour_dir = layout.segment_path(1, 1, handed[0].hour).parent
    hour_dir.parent.mkdir(parents=True)
    hour_dir.write_bytes(b"")  # a file where the hour's directory goes: the first write fails
    streams = SegmentStreams(layout, {})
    with pytest.raises(OSError):
        streams.write(handed[0])
    hour_dir.unlink()  # the disk is back: later writes of the unit still fail
    for item in handed[1:]:
        with pytest.raises(OSError, match="an earlier write"):
            streams.write(item)
    assert layout.segments() == [] and layout.temporary_files() == []
