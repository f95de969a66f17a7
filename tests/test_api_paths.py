"""The Python API takes a path as ``str`` or ``os.PathLike`` wherever it takes one, and
``Decoder.decode`` refuses columns that do not line up."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from replica.decoder.archive import MessageSpec
from replica.schemas.errors import UsageError
from replica.schemas.hyperliquid.replica.v1.replica_pb2 import ReplicaCommand

import replica
from tests.conftest import reached, record
from tests.feedserver import ScriptedFeed, Send
from tests.rawarchive import feed_rows, write_archive
from tests.replayarchives import FEED_FIRST_SEQ, FEED_GAP, FEED_LINES, write_gap_records
from tests.test_import_node import BASE, node_file

ROWS = feed_rows()[:300]


@pytest.fixture
def archive(tmp_path: Path) -> str:
    root = tmp_path / "archive"
    write_archive(root, ROWS, per_segment=100)
    write_gap_records(root, [(*FEED_GAP, "reconnect")])
    return str(root)


def test_readers_take_a_str(archive: str) -> None:
    assert [r.seq for r in replica.open(archive).replay()] == [r["seq"] for r in ROWS]
    assert replica.verify(archive).rows == len(ROWS)
    assert [(g.from_seq, g.to_seq) for g in replica.read_gaps(archive)] == [FEED_GAP]
    with replica.connect(archive) as db:
        assert db.sql("SELECT count(*) FROM raw_cmds").fetchall() == [(len(ROWS),)]
    with replica.connect(archive, Path(archive).with_suffix(".duckdb")) as db:
        assert db.sql("SELECT count(*) FROM gaps").fetchall() == [(1,)]


def test_writers_take_a_str(archive: str, tmp_path: Path) -> None:
    summary = replica.decode(archive, MessageSpec(str(_v1_descriptor_set(tmp_path)), _V1))
    assert (summary.decoded, summary.failed) == (3, [])
    assert [day.segments_in for day in replica.compact(archive).days] == [3]
    files = str(node_file(tmp_path / "node", BASE, 5))
    imported = replica.import_node([files], str(tmp_path / "node-archive"))
    assert (imported.imported, imported.failed) == (5, [])


def test_the_recorder_takes_a_str(tmp_path: Path) -> None:
    with ScriptedFeed([Send(tuple(FEED_LINES[:10]))]) as feed:
        summary, _ = record(feed.url, str(tmp_path / "rec"), reached(FEED_FIRST_SEQ + 9))
    assert summary.archive == str(tmp_path / "rec")
    assert replica.verify(tmp_path / "rec").rows == 10


_V1 = "hyperliquid.replica.v1.ReplicaCommand"


def _v1_descriptor_set(directory: Path) -> Path:
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    ReplicaCommand.DESCRIPTOR.file.CopyToProto(descriptor_set.file.add())
    path = directory / "v1.pb"
    path.write_bytes(descriptor_set.SerializeToString())
    return path


@pytest.mark.parametrize("lengths", [(2, 3, 3), (3, 2, 3), (3, 3, 2)])
def test_decode_refuses_columns_of_different_lengths(lengths: tuple[int, int, int]) -> None:
    seqs = [row["seq"] for row in ROWS[: lengths[0]]]
    ts_ms = [row["ts_ms"] for row in ROWS[: lengths[1]]]
    payloads = [row["raw"] for row in ROWS[: lengths[2]]]
    with pytest.raises(UsageError, match=r"have \d, \d and \d items"):
        replica.Decoder().decode(seqs, ts_ms, payloads)
