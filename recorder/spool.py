"""The write-ahead spool: every frame reaches disk here before it counts as received.

One file per unit, ``spool/<unit>.wal``, a sequence of chunks::

    kind (1 byte) | body length (u32 LE) | crc32 of body (u32 LE) | body

``H`` is the JSON header (unit id and the seq tracker's state when the unit opened); ``R`` is a
zstandard frame of a batch of records, written and flushed together. A crash can leave only a
torn last chunk, which the length and checksum reveal; everything before it is intact.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from recorder.session import SpoolRecord

_CHUNK_HEAD = struct.Struct("<cII")
_COUNT = struct.Struct("<I")
HEADER, RECORDS = b"H", b"R"
_TEXT, _BINARY, _CONNECT = 0, 1, 2
SUFFIX = ".wal"


def encode_chunk(kind: bytes, body: bytes) -> bytes:
    return _CHUNK_HEAD.pack(kind, len(body), zlib.crc32(body)) + body


def decode_chunks(data: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The intact chunks of a spool file, and whether the file ended cleanly after them."""
    chunks = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _CHUNK_HEAD.size:
            return chunks, False
        kind, length, crc = _CHUNK_HEAD.unpack_from(data, pos)
        body = data[pos + _CHUNK_HEAD.size : pos + _CHUNK_HEAD.size + length]
        if len(body) != length or zlib.crc32(body) != crc or kind not in (HEADER, RECORDS):
            return chunks, False
        chunks.append((kind, body))
        pos += _CHUNK_HEAD.size + length
    return chunks, True


def encode_records(records: list[SpoolRecord], compressor: zstandard.ZstdCompressor) -> bytes:
    times = array("q")
    sizes = array("I")
    kinds = bytearray()
    blobs = []
    for recv_us, frame in records:
        times.append(recv_us)
        if frame is None:
            kinds.append(_CONNECT)
            sizes.append(0)
            continue
        if isinstance(frame, str):
            kinds.append(_TEXT)
            frame = frame.encode("utf-8", "surrogatepass")
        else:
            kinds.append(_BINARY)
        sizes.append(len(frame))
        blobs.append(frame)
    body = b"".join(
        (_COUNT.pack(len(records)), times.tobytes(), sizes.tobytes(), bytes(kinds), *blobs)
    )
    return compressor.compress(body)


def decode_records(chunk: bytes) -> list[SpoolRecord]:
    body = zstandard.ZstdDecompressor().decompress(chunk)
    (count,) = _COUNT.unpack_from(body)
    pos = _COUNT.size
    times = array("q", body[pos : pos + 8 * count])
    pos += 8 * count
    sizes = array("I", body[pos : pos + 4 * count])
    pos += 4 * count
    kinds = body[pos : pos + count]
    pos += count
    records: list[SpoolRecord] = []
    for recv_us, size, kind in zip(times, sizes, kinds, strict=True):
        if kind == _CONNECT:
            records.append((recv_us, None))
            continue
        blob = body[pos : pos + size]
        pos += size
        records.append((recv_us, blob.decode("utf-8", "surrogatepass") if kind == _TEXT else blob))
    return records


@dataclass
class SpoolContents:
    header: dict | None
    records: list[SpoolRecord]
    complete: bool  # False when a torn chunk ended the file (a crash mid-write)


def read_spool(path: Path) -> SpoolContents:
    chunks, complete = decode_chunks(path.read_bytes())
    if not chunks or chunks[0][0] != HEADER:
        return SpoolContents(None, [], complete and not chunks)
    records: list[SpoolRecord] = []
    for kind, body in chunks[1:]:
        if kind == RECORDS:
            records.extend(decode_records(body))
    return SpoolContents(json.loads(chunks[0][1]), records, complete)


class SpoolWriter:
    """Appends chunks to one spool file per unit; every call returns with the data on disk.

    Runs on the spool thread: the event loop never waits on it.
    """

    def __init__(self, spool_dir: Path) -> None:
        self._dir = spool_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, BinaryIO] = {}
        self._compressor = zstandard.ZstdCompressor(level=1, write_checksum=True)

    def path(self, unit_id: str) -> Path:
        return self._dir / f"{unit_id}{SUFFIX}"

    def open(self, unit_id: str, header: dict) -> None:
        sink = open(self.path(unit_id), "ab")  # noqa: SIM115 - closed in close()
        self._files[unit_id] = sink
        self._write(sink, encode_chunk(HEADER, json.dumps(header).encode()))

    def append(self, unit_id: str, records: list[SpoolRecord]) -> None:
        body = encode_records(records, self._compressor)
        self._write(self._files[unit_id], encode_chunk(RECORDS, body))

    def close(self, unit_id: str) -> None:
        self._files.pop(unit_id).close()

    def delete(self, unit_id: str) -> None:
        self.path(unit_id).unlink(missing_ok=True)

    def discard(self, unit_id: str) -> None:
        """Drop the spool of a unit that received nothing (the one open at a clean stop)."""
        self.close(unit_id)
        self.delete(unit_id)

    def close_all(self) -> None:
        for sink in self._files.values():
            sink.close()
        self._files.clear()

    @staticmethod
    def _write(sink: BinaryIO, chunk: bytes) -> None:
        sink.write(chunk)
        sink.flush()
        os.fdatasync(sink.fileno())


def leftover_spools(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob(f"*{SUFFIX}"))
