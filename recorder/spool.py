"""The write-ahead spool: every frame reaches disk here before it counts as received.

The file format (chunks, and the records in a chunk) is ``schemas.spool``, where the replay
stage reads it too; a batch of records is written and flushed together (``encode_records``).
"""

from __future__ import annotations

import json
import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard
from replica.recorder.frames import Command
from replica.recorder.quarantine import TooBig
from replica.recorder.session import SpoolRecord
from replica.schemas.spool import BINARY as _BINARY
from replica.schemas.spool import CHUNK_HEAD as _CHUNK_HEAD
from replica.schemas.spool import COMMAND as _COMMAND
from replica.schemas.spool import CONNECT as _CONNECT
from replica.schemas.spool import COUNT as _COUNT
from replica.schemas.spool import (
    HEADER,
    RECORDS,
    SUFFIX,
    decode_chunks,
    encode_chunk,
    split_records,
)
from replica.schemas.spool import TEXT as _TEXT
from replica.schemas.spool import TOO_BIG as _TOO_BIG

_TOO_BIG_BLOB = struct.Struct("<Q?")


def encode_records(records: list[SpoolRecord], compressor: zstandard.ZstdCompressor) -> bytes:
    """One batch, columnar: count; each record's time, kind and blob size; each command's seq,
    ts_ms, ingest_ts_us and publish_ts_us as four columns; then the blobs (payloads, frame
    texts) end to end. A batch of commands only, the usual case, is transposed in C."""
    times = array("q", [recv_us for recv_us, _ in records])
    items = [item for _, item in records]
    commands = [item for item in items if type(item) is Command]
    columns = list(zip(*commands, strict=True)) or [()] * 5
    if len(commands) == len(items):
        kinds, blobs = bytes([_COMMAND]) * len(items), columns[4]
    else:
        kinds, blobs = _kinds_and_blobs(items)
    ints = [array("q", column) for column in columns[:4]]
    sizes = array("I", map(len, blobs))
    body = b"".join((_COUNT.pack(len(records)), times, kinds, sizes, *ints, *blobs))
    return compressor.compress(body)


def _kinds_and_blobs(items: list) -> tuple[bytes, list[bytes]]:
    kinds = bytearray()
    blobs = []
    for item in items:
        if type(item) is Command:
            kinds.append(_COMMAND)
            blobs.append(item.raw)
        elif item is None:
            kinds.append(_CONNECT)
            blobs.append(b"")
        elif type(item) is TooBig:
            kinds.append(_TOO_BIG)
            blobs.append(_TOO_BIG_BLOB.pack(*item))
        elif isinstance(item, str):
            kinds.append(_TEXT)
            blobs.append(item.encode("utf-8", "surrogatepass"))
        else:
            kinds.append(_BINARY)
            blobs.append(item)
    return bytes(kinds), blobs


def decode_records(chunk: bytes) -> list[SpoolRecord]:
    body = split_records(chunk)
    fields = body.command_fields
    records: list[SpoolRecord] = []
    for recv_us, kind, blob in zip(body.times, body.kinds, body.blobs, strict=True):
        if kind == _COMMAND:
            records.append((recv_us, Command(*next(fields), blob)))
        elif kind == _CONNECT:
            records.append((recv_us, None))
        elif kind == _TEXT:
            records.append((recv_us, blob.decode("utf-8", "surrogatepass")))
        elif kind == _TOO_BIG:
            records.append((recv_us, TooBig(*_TOO_BIG_BLOB.unpack(blob))))
        else:
            records.append((recv_us, blob))
    return records


@dataclass
class SpoolContents:
    header: dict | None
    records: list[SpoolRecord]
    torn: bool = False  # a torn chunk ended the file (a crash mid-write)
    damaged_bytes: int = 0  # bytes of damaged chunks skipped (a disk's fault, not a crash)
    header_lost: bool = False  # records were read but the header chunk is damaged

    @property
    def complete(self) -> bool:
        return not self.torn and not self.damaged_bytes


def read_spool(path: Path) -> SpoolContents:
    scan = decode_chunks(path.read_bytes())
    chunks = scan.chunks
    header = None
    if chunks and chunks[0][0] == HEADER:
        header = json.loads(chunks[0][1])
        chunks = chunks[1:]
    contents = SpoolContents(header, [], scan.torn, scan.damaged_bytes)
    for kind, body in chunks:
        if kind != RECORDS:
            contents.damaged_bytes += _CHUNK_HEAD.size + len(body)  # a header out of place
            continue
        try:
            contents.records.extend(decode_records(body))
        except Exception:  # only a chunk whose checksum matched by chance gets here
            contents.damaged_bytes += _CHUNK_HEAD.size + len(body)
    contents.header_lost = header is None and bool(contents.records)
    return contents


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


def damaged_dir(spool_dir: Path) -> Path:
    """Where recovery moves a damaged spool after taking what it could read: kept for study,
    outside ``leftover_spools``, so never recovered twice."""
    return spool_dir / "damaged"


def leftover_spools(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob(f"*{SUFFIX}"))
