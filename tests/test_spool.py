"""``recorder.spool``: the write-ahead spool's chunk and record codecs, and its files on disk.

Recovery trusts the spool to give back exactly what was written (text frames, including lone
surrogates the writer passes through with 'surrogatepass'; binary frames; connection markers)
and, after a crash mid-write, exactly the chunks before the torn one. A corrupted chunk costs
only itself: reading resumes at the next intact chunk (``complete=False``), never yielding
garbage. Codec properties run on arbitrary
records and on every possible truncation point; file tests use ``tmp_path``.
"""

from __future__ import annotations

import json
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.recorder.frames import Command
from replica.recorder.quarantine import TooBig
from replica.recorder.spool import (
    HEADER,
    RECORDS,
    SpoolWriter,
    decode_chunks,
    decode_records,
    encode_chunk,
    encode_records,
    leftover_spools,
    read_spool,
)

PROPERTY = settings(max_examples=200, deadline=None, database=None)
HEAD_SIZE = 9  # kind (1) + length (4) + crc32 (4)

any_text = st.text(st.characters(exclude_categories=()))  # lone surrogates included
int64 = st.integers(-(2**63), 2**63 - 1)
commands = st.builds(Command, int64, int64, int64, int64, st.binary())
too_big = st.builds(TooBig, st.integers(0, 2**64 - 1))
records = st.lists(
    st.tuples(int64, st.one_of(commands, too_big, any_text, st.binary(), st.none())),
    max_size=20,
)


def compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=1, write_checksum=True)


def sample_chunks() -> list[tuple[bytes, bytes]]:
    header = json.dumps({"unit": "u", "opened_us": 1, "state": {}}).encode()
    batch_1 = encode_records([(1, '{"type": "connected"}'), (2, None)], compressor())
    batch_2 = encode_records([(3, b"\x00\x01"), (4, "x")], compressor())
    return [(HEADER, header), (RECORDS, batch_1), (RECORDS, b""), (RECORDS, batch_2)]


def encode_all(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(encode_chunk(kind, body) for kind, body in chunks)


def scan(data: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    found = decode_chunks(data)
    return found.chunks, found.complete


def boundaries(chunks: list[tuple[bytes, bytes]]) -> list[int]:
    ends = [0]
    for _, body in chunks:
        ends.append(ends[-1] + HEAD_SIZE + len(body))
    return ends


# ---- record codec -----------------------------------------------------------------------------


@PROPERTY
@given(records)
def test_records_round_trip(batch):
    decoded = decode_records(encode_records(batch, compressor()))
    assert decoded == batch
    assert [type(frame) for _, frame in decoded] == [type(frame) for _, frame in batch]


def test_lone_surrogates_and_non_bmp_text_round_trip():
    batch = [(0, "\ud800"), (1, "a\udfffb"), (2, "\U0001f600"), (3, "\ud83d\ude00"), (4, "")]
    assert decode_records(encode_records(batch, compressor())) == batch


def test_empty_text_and_empty_binary_frames_stay_distinct():
    decoded = decode_records(encode_records([(1, ""), (2, b""), (3, None)], compressor()))
    assert [type(frame) for _, frame in decoded] == [str, bytes, type(None)]


def test_empty_batch_round_trips():
    assert decode_records(encode_records([], compressor())) == []


# ---- chunk codec ------------------------------------------------------------------------------


def test_chunks_round_trip():
    chunks = sample_chunks()
    assert scan(encode_all(chunks)) == (chunks, True)


def test_empty_data_is_complete_and_empty():
    assert scan(b"") == ([], True)


def test_truncation_at_every_length_keeps_the_chunks_before_the_cut():
    chunks = sample_chunks()
    data = encode_all(chunks)
    ends = boundaries(chunks)
    for cut in range(len(data) + 1):
        whole = sum(end <= cut for end in ends[1:])
        assert scan(data[:cut]) == (chunks[:whole], cut in ends), cut
        assert decode_chunks(data[:cut]).torn == (cut not in ends)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from([HEADER, RECORDS]), st.binary(max_size=40))), st.data())
def test_truncation_anywhere_yields_a_prefix(chunks, data):
    encoded = encode_all(chunks)
    cut = data.draw(st.integers(0, len(encoded)))
    ends = boundaries(chunks)
    decoded, complete = scan(encoded[:cut])
    assert decoded == chunks[: len(decoded)]
    assert complete == (cut in ends)
    assert len(decoded) == sum(end <= cut for end in ends[1:])


def test_flipped_byte_in_a_body_costs_that_chunk_only():
    chunks = sample_chunks()
    data = encode_all(chunks)
    ends = boundaries(chunks)
    # Chunk 2 is empty: resynchronising never trusts an empty chunk (a run of zeros is one).
    kept = {1: chunks[:1] + chunks[3:], 3: chunks[:3]}
    for index in (1, 3):  # the two non-empty record batches
        start = ends[index] + HEAD_SIZE
        for pos in range(start, ends[index + 1]):
            for flip in (0x01, 0x80, 0xFF):
                corrupted = bytearray(data)
                corrupted[pos] ^= flip
                found = decode_chunks(bytes(corrupted))
                assert (found.chunks, found.torn) == (kept[index], False)
                assert found.damaged_bytes == ends[index + 1 + (index == 1)] - ends[index]


@PROPERTY
@given(
    st.lists(st.tuples(st.sampled_from([HEADER, RECORDS]), st.binary(min_size=1, max_size=40))),
    st.data(),
)
def test_a_flipped_byte_anywhere_loses_only_the_chunk_it_is_in(chunks, data):
    encoded = bytearray(encode_all(chunks))
    if not encoded:
        return
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] ^= data.draw(st.integers(1, 255))
    hit = sum(end <= pos for end in boundaries(chunks)[1:])
    found = decode_chunks(bytes(encoded))
    assert found.chunks == chunks[:hit] + chunks[hit + 1 :]
    assert not found.complete


def test_header_json_body_flip_is_detected():
    chunks = sample_chunks()
    corrupted = bytearray(encode_all(chunks))
    corrupted[HEAD_SIZE + 2] ^= 0x20
    assert scan(bytes(corrupted)) == (chunks[1:], False)


def test_unknown_chunk_kind_is_skipped():
    data = encode_chunk(HEADER, b"{}") + encode_chunk(b"X", b"body") + encode_chunk(RECORDS, b"r")
    assert scan(data) == ([(HEADER, b"{}"), (RECORDS, b"r")], False)


def test_chunk_head_layout():
    assert encode_chunk(RECORDS, b"abc") == (
        b"R" + (3).to_bytes(4, "little") + zlib.crc32(b"abc").to_bytes(4, "little") + b"abc"
    )


# ---- files ------------------------------------------------------------------------------------

HEADER_DICT = {"unit": "0001-aa", "opened_us": 5, "state": {"last_seq": 9, "pending": "restart"}}
BATCH_1 = [(10, None), (11, '{"type": "connected", "feed": "x", "ts_ms": 1}'), (12, "\ud800")]
BATCH_2 = [(13, b"\xff\x00binary"), (14, "not json")]


def write_spool(tmp_path) -> SpoolWriter:
    writer = SpoolWriter(tmp_path / "spool")
    writer.open("0001-aa", HEADER_DICT)
    writer.append("0001-aa", BATCH_1)
    writer.append("0001-aa", BATCH_2)
    writer.close("0001-aa")
    return writer


def test_writer_creates_its_directory(tmp_path):
    SpoolWriter(tmp_path / "a" / "spool")
    assert (tmp_path / "a" / "spool").is_dir()


def test_written_spool_reads_back(tmp_path):
    writer = write_spool(tmp_path)
    contents = read_spool(writer.path("0001-aa"))
    assert contents.header == HEADER_DICT
    assert contents.records == BATCH_1 + BATCH_2
    assert contents.complete


def test_spool_torn_mid_chunk_keeps_the_records_before_it(tmp_path):
    writer = write_spool(tmp_path)
    path = writer.path("0001-aa")
    path.write_bytes(path.read_bytes()[:-3])
    contents = read_spool(path)
    assert contents.header == HEADER_DICT
    assert contents.records == BATCH_1
    assert not contents.complete


def test_spool_torn_at_every_byte_never_yields_a_partial_batch(tmp_path):
    writer = write_spool(tmp_path)
    path = writer.path("0001-aa")
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        contents = read_spool(path)
        assert contents.records in ([], BATCH_1, BATCH_1 + BATCH_2)
        assert contents.header in (None, HEADER_DICT)


def test_spool_with_only_a_torn_header(tmp_path):
    writer = write_spool(tmp_path)
    path = writer.path("0001-aa")
    path.write_bytes(path.read_bytes()[: HEAD_SIZE + 4])
    contents = read_spool(path)
    assert (contents.header, contents.records, contents.complete) == (None, [], False)


def test_spool_with_only_a_header(tmp_path):
    writer = SpoolWriter(tmp_path)
    writer.open("u", HEADER_DICT)
    writer.close("u")
    contents = read_spool(writer.path("u"))
    assert (contents.header, contents.records, contents.complete) == (HEADER_DICT, [], True)


def test_empty_spool_file_has_no_header(tmp_path):
    path = tmp_path / "u.wal"
    path.write_bytes(b"")
    contents = read_spool(path)
    assert (contents.header, contents.records, contents.complete) == (None, [], True)


def test_spool_without_a_header_chunk_gives_its_records_and_says_the_header_is_lost(tmp_path):
    path = tmp_path / "u.wal"
    path.write_bytes(encode_chunk(RECORDS, encode_records(BATCH_2, compressor())))
    contents = read_spool(path)
    assert (contents.header, contents.records, contents.header_lost) == (None, BATCH_2, True)


def test_discard_removes_the_file_and_delete_tolerates_a_missing_one(tmp_path):
    writer = SpoolWriter(tmp_path)
    writer.open("u", HEADER_DICT)
    writer.discard("u")
    assert not writer.path("u").exists()
    writer.delete("u")
    with pytest.raises(KeyError):
        writer.close("u")


def test_leftover_spools_are_listed_in_name_order(tmp_path):
    writer = SpoolWriter(tmp_path)
    for unit in ("0003-c", "0001-a", "0002-b"):
        writer.open(unit, HEADER_DICT)
    writer.close_all()
    (tmp_path / "other.txt").write_text("")
    assert [p.name for p in leftover_spools(tmp_path)] == ["0001-a.wal", "0002-b.wal", "0003-c.wal"]
