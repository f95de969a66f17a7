"""What a replay hands out, identical on every run: records through ``for`` and ``async for``,
the feed's own JSON frames, and the digest, checked against its written definition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from replica.recorder.frames import Command, parse_frame
from replica.replay.digest import CommandDigest
from replica.schemas.frames import command_frame

import replica
from tests.replayarchives import FEED_LINES, record_fixture_feed

int64 = st.integers(0, 2**63 - 1)
records = st.builds(
    replica.ReplayRecord,
    seq=int64,
    ts_ms=st.integers(0, 253_402_300_799_999),
    ingest_ts_us=int64,
    publish_ts_us=int64,
    recv_ts_us=int64,
    raw=st.binary(max_size=300),
    scheduled_s=st.none(),
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> replica.Archive:
    return replica.open(record_fixture_feed(tmp_path_factory.mktemp("replay") / "archive"))


def by_hand(pairs: list[tuple[int, bytes]]) -> str:
    """The README's definition, written out independently of replay.digest."""
    sha = hashlib.sha256()
    for seq, raw in pairs:
        sha.update(seq.to_bytes(8, "big") + len(raw).to_bytes(4, "big") + raw)
    return sha.hexdigest()


def test_replayed_frames_are_the_recorded_feed_byte_for_byte(archive: replica.Archive) -> None:
    """The recorder archived the demo feed; the replay gives back exactly its lines."""
    for _ in range(2):
        frames = [
            command_frame(item)
            for item in archive.replay()
            if isinstance(item, replica.ReplayRecord)
        ]
        assert frames == FEED_LINES


def test_async_for_yields_what_for_yields(archive: replica.Archive) -> None:
    async def collect() -> list:
        return [item async for item in archive.replay(from_seq=482_911_000)]

    replay = archive.replay(from_seq=482_911_000)
    assert asyncio.run(collect()) == list(replay) == list(replay)


def test_the_digest_is_its_definition_and_the_same_every_time(archive: replica.Archive) -> None:
    feed = [json.loads(line) for line in FEED_LINES]
    expected = by_hand([(f["seq"], bytes.fromhex(f["raw_hex"])) for f in feed])
    for _ in range(2):
        digest = CommandDigest()
        for item in archive.replay():
            if isinstance(item, replica.ReplayRecord):
                digest.update(item.seq, item.raw)
        assert (digest.hexdigest(), digest.commands) == (expected, 3000)


@given(st.lists(st.tuples(int64, st.binary(max_size=40)), max_size=20))
def test_the_digest_follows_the_definition(pairs: list[tuple[int, bytes]]) -> None:
    digest = CommandDigest()
    for seq, raw in pairs:
        digest.update(seq, raw)
    assert digest.hexdigest() == by_hand(pairs)


def test_the_length_prefix_keeps_payload_boundaries_apart() -> None:
    def digest_of(pairs: list[tuple[int, bytes]]) -> str:
        digest = CommandDigest()
        for seq, raw in pairs:
            digest.update(seq, raw)
        return digest.hexdigest()

    assert digest_of([(1, b"ab"), (2, b"c")]) != digest_of([(1, b"a"), (2, b"bc")])
    assert digest_of([(1, b"")]) != digest_of([])


@given(records)
def test_a_frame_is_what_the_feed_sends_and_the_recorder_reads(record: replica.ReplayRecord):
    text = command_frame(record)
    assert list(json.loads(text)) == [
        "type",
        "seq",
        "raw_hex",
        "ts_ms",
        "ingest_ts_us",
        "publish_ts_us",
    ]
    assert parse_frame(text) == Command(
        record.seq, record.ts_ms, record.ingest_ts_us, record.publish_ts_us, record.raw
    )
    assert text == json.dumps(
        {
            "type": "replica_cmd",
            "seq": record.seq,
            "raw_hex": record.raw.hex(),
            "ts_ms": record.ts_ms,
            "ingest_ts_us": record.ingest_ts_us,
            "publish_ts_us": record.publish_ts_us,
        },
        separators=(",", ":"),
    )


def test_records_have_every_timestamp_and_the_payload(archive: replica.Archive) -> None:
    first = next(iter(archive.replay()))
    assert first._fields == (
        "seq",
        "ts_ms",
        "ingest_ts_us",
        "publish_ts_us",
        "recv_ts_us",
        "raw",
        "scheduled_s",
    )
    assert isinstance(first.raw, bytes) and first.scheduled_s is None


def test_paced_records_carry_their_schedule(archive: replica.Archive) -> None:
    replay = archive.replay(to_seq=482_910_002, speed=1000)
    got = list(replay)
    assert got[0].scheduled_s == 0.0
    assert [r.scheduled_s for r in got] == [(r.ts_ms - got[0].ts_ms) / 1e6 for r in got]
    assert replay.started_at is not None
