"""The recorder's write-ahead spool format, shared by the recorder (which writes and recovers
spools) and the replay stage (which follows what a running recorder has spooled but not sealed).

One file per unit, ``spool/<unit>.wal``, a sequence of chunks::

    kind (1 byte) | body length (u32 LE) | crc32 of body (u32 LE) | body

``H`` is the JSON header (unit id and the seq tracker's state when the unit opened); ``R`` is a
zstandard frame of a batch of records: count; each record's time, kind and blob size; each
command's seq, ts_ms, ingest_ts_us and publish_ts_us as four columns; then the blobs (payloads,
frame texts) end to end. A crash can leave only a torn last chunk, which the length and checksum
reveal; everything before it is intact.
"""

from __future__ import annotations

import re
import struct
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import zstandard

CHUNK_HEAD = struct.Struct("<cII")
_CHUNK_KIND = re.compile(b"[HR]")
COUNT = struct.Struct("<I")
HEADER, RECORDS = b"H", b"R"
TEXT, BINARY, CONNECT, COMMAND, TOO_BIG = 0, 1, 2, 3, 4  # a record's kind
SUFFIX = ".wal"
# Set in a batch's count when the recorder records several endpoints: its records then also name
# their endpoint, and its commands are deliveries the merge may still hold back for a missing seq.
WITH_ENDPOINTS = 1 << 31


def encode_chunk(kind: bytes, body: bytes) -> bytes:
    return CHUNK_HEAD.pack(kind, len(body), zlib.crc32(body)) + body


@dataclass
class ChunkScan:
    """What a spool file's bytes hold: its intact chunks, in order, and what is not intact."""

    chunks: list[tuple[bytes, bytes]]
    damaged_bytes: int = 0  # bytes skipped between intact chunks, or at the end (not torn)
    torn: bool = False  # the file ends in a chunk cut short: a crash mid-write

    @property
    def complete(self) -> bool:
        return not self.damaged_bytes and not self.torn


def _chunk_at(data: bytes, pos: int) -> tuple[bytes, bytes] | None:
    """The intact chunk at ``pos``, if there is one."""
    if len(data) - pos < CHUNK_HEAD.size:
        return None
    kind, length, crc = CHUNK_HEAD.unpack_from(data, pos)
    start = pos + CHUNK_HEAD.size
    body = data[start : start + length]
    if kind not in (HEADER, RECORDS) or len(body) != length or zlib.crc32(body) != crc:
        return None
    return kind, body


def _next_chunk(data: bytes, pos: int) -> int | None:
    """Where the next intact chunk after ``pos`` starts: resynchronising after damage. Writers
    never write an empty body, so a run of zeros cannot pass for a chunk."""
    for match in _CHUNK_KIND.finditer(data, pos + 1):
        found = _chunk_at(data, match.start())
        if found is not None and found[1]:
            return match.start()
    return None


def _cut_short(data: bytes, pos: int) -> bool:
    """Whether the chunk at ``pos`` runs past the end of the file, as a torn write leaves it."""
    if len(data) - pos < CHUNK_HEAD.size:
        return True
    length: int = CHUNK_HEAD.unpack_from(data, pos)[1]
    return pos + CHUNK_HEAD.size + length > len(data)


def decode_chunks(data: bytes) -> ChunkScan:
    """Every intact chunk of a spool file. Each chunk is checksummed, so damage in the middle
    costs only the chunks it touches: reading resumes at the next intact chunk."""
    scan = ChunkScan([])
    pos = 0
    while pos < len(data):
        found = _chunk_at(data, pos)
        if found is not None:
            scan.chunks.append(found)
            pos += CHUNK_HEAD.size + len(found[1])
            continue
        resume = _next_chunk(data, pos)
        if resume is None:
            if _cut_short(data, pos):
                scan.torn = True
            else:
                scan.damaged_bytes += len(data) - pos
            break
        scan.damaged_bytes += resume - pos
        pos = resume
    return scan


class RecordsBody(NamedTuple):
    """A records chunk taken apart: each record's time, kind and blob, and the four integer
    fields of each command record, in order."""

    times: array[int]
    kinds: bytes
    blobs: list[bytes]
    command_fields: Iterator[tuple[int, int, int, int]]


def _array(typecode: str, view: memoryview) -> array[int]:
    values = array(typecode)
    values.frombytes(view)
    return values


def split_records(chunk: bytes) -> RecordsBody:
    return _split(memoryview(zstandard.ZstdDecompressor().decompress(chunk)))


def _split(body: memoryview) -> RecordsBody:
    (count,) = COUNT.unpack_from(body)
    pos = COUNT.size
    times = _array("q", body[pos : pos + 8 * count])
    pos += 8 * count
    kinds = bytes(body[pos : pos + count])
    pos += count
    sizes = _array("I", body[pos : pos + 4 * count])
    pos += 4 * count
    commands = kinds.count(COMMAND)
    ints = []
    for _ in range(4):
        ints.append(_array("q", body[pos : pos + 8 * commands]))
        pos += 8 * commands
    blobs = []
    for size in sizes:
        blobs.append(bytes(body[pos : pos + size]))
        pos += size
    return RecordsBody(times, kinds, blobs, zip(*ints, strict=True))


# A spooled command as a raw row: seq, ts_ms, ingest_ts_us, publish_ts_us, recv_ts_us, raw.
SpooledCommand = tuple[int, int, int, int, int, bytes]


class SpoolTail:
    """The commands a running recorder has spooled, read on from where the last call stopped.

    Spool files only grow until the recorder deletes them (once their unit is sealed), so each
    file is read from the end of its last intact chunk read before; a chunk not intact yet (being
    written) is read on the next call. A file that vanished is forgotten."""

    def __init__(self, spool_dir: Path) -> None:
        self._dir = spool_dir
        self._read_to: dict[Path, int] = {}

    def new_commands(self) -> list[SpooledCommand]:
        found: list[SpooledCommand] = []
        present = sorted(self._dir.glob(f"*{SUFFIX}"))
        self._read_to = {path: self._read_to.get(path, 0) for path in present}
        for path in present:
            try:
                with open(path, "rb") as spool:
                    spool.seek(self._read_to[path])
                    data = spool.read()
            except FileNotFoundError:
                continue  # sealed and deleted since the listing: its segment has it
            pos = 0
            while (chunk := _chunk_at(data, pos)) is not None:
                pos += CHUNK_HEAD.size + len(chunk[1])
                if chunk[0] == RECORDS:
                    found += _commands(chunk[1])
            self._read_to[path] += pos
        return found


def _commands(chunk: bytes) -> list[SpooledCommand]:
    """The commands of one records chunk; none from a batch of several endpoints' deliveries,
    which are not yet in archive order: a follower takes those from the sealed segment."""
    try:
        data = memoryview(zstandard.ZstdDecompressor().decompress(chunk))
        if COUNT.unpack_from(data)[0] & WITH_ENDPOINTS:
            return []
        body = _split(data)
    except Exception:  # only a chunk whose checksum matched by chance gets here
        return []
    return [
        (*next(body.command_fields), recv_us, blob)
        for recv_us, kind, blob in zip(body.times, body.kinds, body.blobs, strict=True)
        if kind == COMMAND
    ]
