"""The write-ahead spool: every frame reaches disk here before it counts as received.

The file and chunk format is ``schemas.spool``'s, shared with the replay stage, which follows a
running recorder's spool. The records a chunk holds are the recorder's own (``encode_records``):
with several endpoints a batch also names each record's endpoint, and the merge's decisions
(carried, released, closed, echoed) are records too, so that recovery decides the same way.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard
from replica.recorder.frames import Command
from replica.recorder.quarantine import TooBig
from replica.recorder.units import Carried, Closed, Echo, Item, Release, SpoolRecord, Via
from replica.schemas.spool import CHUNK_HEAD as _CHUNK_HEAD
from replica.schemas.spool import COUNT as _COUNT
from replica.schemas.spool import (
    HEADER,
    RECORDS,
    SUFFIX,
    WITH_ENDPOINTS,
    decode_chunks,
    encode_chunk,
)

_TEXT, _BINARY, _CONNECT, _COMMAND, _TOO_BIG = 0, 1, 2, 3, 4
_CLOSED, _CARRIED, _RELEASE, _ECHO = 5, 6, 7, 8
_SEQ = struct.Struct("<q")
_WITH_COMMAND = (_COMMAND, _CARRIED)
_TOO_BIG_BLOB = struct.Struct("<Q?")


def encode_records(records: list[SpoolRecord], compressor: zstandard.ZstdCompressor) -> bytes:
    """One batch, columnar: count; each record's time, its endpoint (only in a batch with a
    record of endpoint >= 1 or a merge marker: the count's top bit says so, and a one-URL spool
    is what it always was), kind and blob size; each command's seq, ts_ms, ingest_ts_us and
    publish_ts_us as four columns; then the blobs (payloads, frame texts) end to end. A batch of
    endpoint 0's commands only, the usual case, is transposed in C."""
    times = array("q", [recv_us for recv_us, _ in records])
    items = [item for _, item in records]
    commands = [item for item in items if type(item) is Command]
    if len(commands) == len(items):
        endpoints, kinds = b"", bytes([_COMMAND]) * len(items)
        columns = list(zip(*commands, strict=True)) or [()] * 5
        blobs = list(columns[4])
    else:
        endpoints, kinds, commands, blobs = _kinds_and_blobs(items)
        columns = list(zip(*commands, strict=True)) or [()] * 5
    ints = [array("q", column) for column in columns[:4]]
    sizes = array("I", map(len, blobs))
    count = len(records) | (WITH_ENDPOINTS if endpoints else 0)
    head = (_COUNT.pack(count), times, endpoints, kinds, sizes)
    return compressor.compress(b"".join((*head, *ints, *blobs)))


def _kinds_and_blobs(
    records: list[Item | Via],
) -> tuple[bytes, bytes, list[Command], list[bytes]]:
    endpoints, kinds = bytearray(), bytearray()
    commands: list[Command] = []
    blobs: list[bytes] = []
    for record in records:
        endpoint, item = record if type(record) is Via else (0, record)
        endpoints.append(endpoint)
        if type(item) is Command:
            kinds.append(_COMMAND)
            commands.append(item)
            blobs.append(item.raw)
        elif type(item) is Echo:  # every other record with several endpoints: checked early
            kinds.append(_ECHO)
            blobs.append(_SEQ.pack(item.seq))
        elif type(item) is Carried:
            kinds.append(_CARRIED)
            commands.append(item.cmd)
            blobs.append(item.cmd.raw)
        elif item is None:
            kinds.append(_CONNECT)
            blobs.append(b"")
        elif type(item) is TooBig:
            kinds.append(_TOO_BIG)
            blobs.append(_TOO_BIG_BLOB.pack(*item))
        elif type(item) is Closed:
            kinds.append(_CLOSED)
            blobs.append(item.why.encode("utf-8", "surrogatepass"))
        elif type(item) is Release:
            kinds.append(_RELEASE)
            blobs.append(bytes([item.force]))
        elif isinstance(item, str):
            kinds.append(_TEXT)
            blobs.append(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, bytes):
            kinds.append(_BINARY)
            blobs.append(item)
    merged = any(endpoints) or any(kind > _TOO_BIG for kind in kinds)
    return bytes(endpoints) if merged else b"", bytes(kinds), commands, blobs


def _array(typecode: str, view: memoryview) -> array[int]:
    values = array(typecode)
    values.frombytes(view)
    return values


def decode_records(chunk: bytes) -> list[SpoolRecord]:
    body = memoryview(zstandard.ZstdDecompressor().decompress(chunk))
    (count,) = _COUNT.unpack_from(body)
    with_endpoints, count = count & WITH_ENDPOINTS, count & ~WITH_ENDPOINTS
    pos = _COUNT.size
    times = _array("q", body[pos : pos + 8 * count])
    pos += 8 * count
    endpoints = bytes(count)
    if with_endpoints:
        endpoints = bytes(body[pos : pos + count])
        pos += count
    kinds = bytes(body[pos : pos + count])
    pos += count
    sizes = _array("I", body[pos : pos + 4 * count])
    pos += 4 * count
    commands = kinds.count(_COMMAND) + kinds.count(_CARRIED)
    ints = []
    for _ in range(4):
        ints.append(_array("q", body[pos : pos + 8 * commands]))
        pos += 8 * commands
    fields = zip(*ints, strict=True)
    records: list[SpoolRecord] = []
    for recv_us, endpoint, size, kind_of in zip(times, endpoints, sizes, kinds, strict=True):
        blob = bytes(body[pos : pos + size])
        pos += size
        item: Item
        if kind_of in _WITH_COMMAND:
            seq, ts_ms, ingest_ts_us, publish_ts_us = next(fields)
            item = Command(seq, ts_ms, ingest_ts_us, publish_ts_us, blob)
            if kind_of == _CARRIED:
                item = Carried(item)
        elif kind_of == _CONNECT:
            item = None
        elif kind_of == _TEXT:
            item = blob.decode("utf-8", "surrogatepass")
        elif kind_of == _TOO_BIG:
            item = TooBig(*_TOO_BIG_BLOB.unpack(blob))
        elif kind_of == _CLOSED:
            item = Closed(blob.decode("utf-8", "surrogatepass"))
        elif kind_of == _ECHO:
            item = Echo(_SEQ.unpack(blob)[0])
        elif kind_of == _RELEASE:
            item = Release(bool(blob[0]))
        else:
            item = blob
        records.append((recv_us, Via(endpoint, item) if endpoint else item))
    return records


def spooled_commands(records: list[SpoolRecord]) -> Iterator[Command]:
    """Every command a spool's records hold, whichever endpoint delivered it, carried ones too."""
    for _, record in records:
        item = record.item if type(record) is Via else record
        if type(item) is Carried:
            yield item.cmd
        elif type(item) is Command:
            yield item


@dataclass
class SpoolContents:
    header: dict[str, object] | None
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
    """Appends chunks to one spool file per unit.

    By default every call returns with the data on disk (written and fdatasync'd), on the
    spool thread, so the event loop never waits on it. With ``sync=False`` a call returns once
    the chunk is written (in the page cache, where a kill -9 of the process cannot lose it) and
    ``sync`` makes every such write durable later: the relay's mode (``Writers``), where the
    loop writes and the spool thread syncs. ``close`` syncs what is still unsynced first.
    """

    def __init__(self, spool_dir: Path) -> None:
        self._dir = spool_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, BinaryIO] = {}
        self._compressor = zstandard.ZstdCompressor(level=1, write_checksum=True)
        # Units written with sync=False and not synced since: written on one thread, synced
        # on another, so the set is only touched under the lock.
        self._unsynced: set[str] = set()
        self._lock = threading.Lock()

    def path(self, unit_id: str) -> Path:
        return self._dir / f"{unit_id}{SUFFIX}"

    def open(self, unit_id: str, header: dict[str, object], *, sync: bool = True) -> None:
        sink = open(self.path(unit_id), "ab")  # noqa: SIM115 - closed in close()
        self._files[unit_id] = sink
        self._write(unit_id, encode_chunk(HEADER, json.dumps(header).encode()), sync)

    def append(self, unit_id: str, records: list[SpoolRecord], *, sync: bool = True) -> None:
        body = encode_records(records, self._compressor)
        self._write(unit_id, encode_chunk(RECORDS, body), sync)

    def sync(self) -> None:
        """fdatasync every file written with ``sync=False`` since the last sync."""
        with self._lock:
            units = list(self._unsynced)
            self._unsynced.clear()
        for unit_id in units:
            os.fdatasync(self._files[unit_id].fileno())

    def close(self, unit_id: str) -> None:
        with self._lock:
            unsynced = unit_id in self._unsynced
            self._unsynced.discard(unit_id)
        sink = self._files.pop(unit_id)
        if unsynced:
            os.fdatasync(sink.fileno())
        sink.close()

    def delete(self, unit_id: str) -> None:
        self.path(unit_id).unlink(missing_ok=True)

    def discard(self, unit_id: str) -> None:
        """Drop the spool of a unit that received nothing (the one open at a clean stop)."""
        self.close(unit_id)
        self.delete(unit_id)

    def close_all(self) -> None:
        self.sync()
        for sink in self._files.values():
            sink.close()
        self._files.clear()

    def _write(self, unit_id: str, chunk: bytes, sync: bool) -> None:
        sink = self._files[unit_id]
        sink.write(chunk)
        sink.flush()
        if sync:
            os.fdatasync(sink.fileno())
        else:
            with self._lock:
                self._unsynced.add(unit_id)


def damaged_dir(spool_dir: Path) -> Path:
    """Where recovery moves a damaged spool after taking what it could read: kept for study,
    outside ``leftover_spools``, so never recovered twice."""
    return spool_dir / "damaged"


def leftover_spools(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob(f"*{SUFFIX}"))
