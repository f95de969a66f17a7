"""Where a Parquet file's pages lie, byte by byte: each page's header and its data, found by
walking the page headers (Thrift compact protocol) of every column chunk, written here apart
from replica's own code, so that tests can damage exactly the bytes a page checksum covers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

_STRUCT, _LIST, _SET, _MAP = 12, 9, 10, 11
_FIXED = {1: 0, 2: 0, 3: 1, 7: 8}  # bool true, bool false, byte, double: their sizes
_VARINT = {4, 5, 6}  # i16, i32, i64
_BINARY = 8
_COMPRESSED_SIZE = 3  # the PageHeader field holding the page data's size


@dataclass(frozen=True)
class Page:
    header: range  # the bytes of the page header
    data: range  # the bytes of the page's (compressed) data, which its CRC covers


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        shift = value = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def skip(self, kind: int) -> None:
        if kind in _FIXED:
            self.pos += _FIXED[kind]
        elif kind in _VARINT:
            self.varint()
        elif kind == _BINARY:
            size = self.varint()
            self.pos += size
        elif kind in (_LIST, _SET):
            header = self.byte()
            size = header >> 4 if header >> 4 != 15 else self.varint()
            for _ in range(size):
                self.skip(header & 0x0F if header & 0x0F not in (1, 2) else 3)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4)
                    self.skip(types & 0x0F)
        elif kind == _STRUCT:
            self.struct()
        else:
            raise ValueError(f"not a Thrift compact type: {kind}")

    def struct(self) -> dict[int, int]:
        """Skip a struct; returns its top-level integer fields by id."""
        fields: dict[int, int] = {}
        field = 0
        while (header := self.byte()) != 0:
            kind = header & 0x0F
            field = field + (header >> 4) if header >> 4 else _zigzag(self.varint())
            if kind in _VARINT:
                fields[field] = _zigzag(self.varint())
            else:
                self.skip(kind)
        return fields


def _zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def pages(path: Path) -> list[Page]:
    """Every page of the file, in file order."""
    data = path.read_bytes()
    metadata = pq.read_metadata(path)
    found = []
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(column)
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page else None
            pos = start if start is not None else chunk.data_page_offset
            end = pos + chunk.total_compressed_size
            while pos < end:
                reader = _Reader(data, pos)
                size = reader.struct()[_COMPRESSED_SIZE]
                found.append(Page(range(pos, reader.pos), range(reader.pos, reader.pos + size)))
                pos = reader.pos + size
    return found
