"""Writing a unit's raw segment a row group at a time, while the unit is still open.

The session hands an open unit's rows out as ``RawChunk``s; each becomes a row group of a
Parquet file under a temporary name, and the unit's seal closes it, fsyncs it and moves it to
the segment's name (which needs the unit's last seq), then publishes the unit's other tables as
``publish_unit`` does. The recorder so holds a row group of commands, not a whole segment, and
nothing changes for a reader: the temporary file is hidden (and removed by the next start if
the recorder dies), and the spool keeps every command until the segment is published. An
existing segment is kept, as ``publish_parquet`` keeps it.

Runs on the writer thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq
from replica.recorder.segments import publish_unit, raw_table, unit_files
from replica.recorder.units import RawChunk, Unit
from replica.schemas.archive import RAW_SCHEMA, RAW_WRITE_OPTIONS, ArchiveLayout
from replica.schemas.files import PAGE_CHECKSUMS, fsync_dir, publish_parquet, temporary_path

_FILE_OPTIONS = {k: v for k, v in RAW_WRITE_OPTIONS.items() if k != "row_group_size"}


class _Stream:
    def __init__(self, path: Path, metadata: dict[bytes, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.sink: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        schema = RAW_SCHEMA.with_metadata(metadata)
        self.writer = pq.ParquetWriter(self.sink, schema, **_FILE_OPTIONS, **PAGE_CHECKSUMS)

    def close(self) -> None:
        self.writer.close()
        self.sink.flush()
        os.fsync(self.sink.fileno())
        self.sink.close()


class SegmentStreams:
    """The raw segments being written a chunk at a time, one per open unit."""

    def __init__(self, layout: ArchiveLayout, metadata: dict[bytes, str]) -> None:
        self._layout = layout
        self._metadata = metadata
        self._streams: dict[str, _Stream] = {}
        self._failed: set[str] = set()

    def write(self, item: Unit | RawChunk) -> list[Path]:
        """Append a chunk to its unit's segment, or publish a sealed unit; returns the files
        published. Once a write of a unit failed, every later one of it fails too: its segment
        would lack rows, and its spool (kept) holds them all for the next start."""
        if item.unit_id in self._failed:
            raise OSError(f"an earlier write of unit {item.unit_id}'s segment failed")
        try:
            return self._write(item)
        except BaseException:
            self._failed.add(item.unit_id)
            stream = self._streams.pop(item.unit_id, None)
            if stream is not None:
                stream.sink.close()
                stream.path.unlink(missing_ok=True)
            raise

    def _write(self, item: Unit | RawChunk) -> list[Path]:
        if isinstance(item, RawChunk):
            self._append(item.unit_id, item, item.hour, item.seq[0])
            return []
        stream = self._streams.get(item.unit_id)
        if stream is None:
            return publish_unit(item, self._layout, self._metadata)
        if item.raw:
            self._append(item.unit_id, item, item.hour, item.first_seq)
        del self._streams[item.unit_id]
        segment = self._finish(stream, item)
        written = [] if segment is None else [segment]
        for path, table, options in unit_files(item, self._layout, self._metadata, raw=False):
            if publish_parquet(table, path, **options):
                written.append(path)
        return written

    def _append(self, unit_id: str, rows: Unit | RawChunk, hour: int, first_seq: int) -> None:
        stream = self._streams.get(unit_id)
        if stream is None:
            final = self._layout.segment_path(first_seq, first_seq, hour)
            stream = self._streams[unit_id] = _Stream(temporary_path(final), self._metadata)
        table = raw_table(rows, self._metadata)
        stream.writer.write_table(table, row_group_size=len(table))

    def _finish(self, stream: _Stream, unit: Unit) -> Path | None:
        """Move the finished file to the segment's name, unless a segment is there already."""
        try:
            stream.close()
            final = self._layout.segment_path(unit.first_seq, unit.last_seq, unit.hour)
            if final.exists():
                return None
            os.rename(stream.path, final)
        finally:
            stream.path.unlink(missing_ok=True)
        fsync_dir(final.parent)
        return final
