"""The seqs and payloads a heal compares a source's rows against: the archive's own, read a row
group at a time, and those already taken from the source but not yet written."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replica.schemas.archive import RAW_SCHEMA, Segment
from replica.schemas.errors import ArchiveError
from replica.schemas.storepath import parquet_file

HELD_SCHEMA = pa.schema([RAW_SCHEMA.field("seq"), RAW_SCHEMA.field("raw")])
_EPOCH = date(1970, 1, 1)
_MS_PER_DAY = 86_400_000
_CACHED_GROUPS = 4  # row groups kept: a source's chunks meet each archive row group in turn


def _between(table: pa.Table, lo: int, hi: int) -> pa.Table:
    seqs = table.column("seq")
    return table.filter(pc.and_(pc.greater_equal(seqs, lo), pc.less_equal(seqs, hi)))


class ArchiveRows:
    """The archive's (seq, raw) rows in a seq range, reading only the row groups whose seq
    statistics meet it."""

    def __init__(self, segments: list[Segment]) -> None:
        self._segments = segments
        self._firsts = np.array([s.first_seq for s in segments], dtype=np.int64)
        self._groups: OrderedDict[tuple[Path, int], pa.Table] = OrderedDict()

    def rows(self, lo: int, hi: int) -> pa.Table:
        stop = int(np.searchsorted(self._firsts, hi, side="right"))
        start = stop
        while start > 0 and self._segments[start - 1].last_seq >= lo:
            start -= 1
        found = [HELD_SCHEMA.empty_table()]
        for segment in self._segments[start:stop]:
            try:
                found += self._read(segment.path, lo, hi)
            except (OSError, pa.ArrowException) as exc:
                raise ArchiveError(
                    f"cannot read segment {segment.path}: {exc}; run 'replica verify' on the "
                    "archive"
                ) from exc
        return pa.concat_tables(found)

    def _read(self, path: Path, lo: int, hi: int) -> list[pa.Table]:
        parquet = parquet_file(path)
        seq_column = parquet.schema_arrow.get_field_index("seq")
        tables = []
        for index in range(parquet.num_row_groups):
            stats = parquet.metadata.row_group(index).column(seq_column).statistics
            if stats is not None and stats.has_min_max and (stats.max < lo or stats.min > hi):
                continue
            key = (path, index)
            group = self._groups.pop(key, None)
            if group is None:
                group = parquet.read_row_group(index, columns=["seq", "raw"]).cast(HELD_SCHEMA)
            self._groups[key] = group
            while len(self._groups) > _CACHED_GROUPS:
                self._groups.popitem(last=False)
            tables.append(_between(group, lo, hi))
        return tables


class Pending:
    """Rows taken from a source and not yet written, by UTC day of their ts_ms."""

    def __init__(self) -> None:
        self._days: dict[date, list[pa.Table]] = {}
        self._metadata: dict[date, dict[bytes, bytes]] = {}
        self.size = 0

    def add(self, rows: pa.Table, metadata: dict[bytes, bytes]) -> None:
        day_numbers = rows.column("ts_ms").to_numpy() // _MS_PER_DAY
        for number in np.unique(day_numbers).tolist():
            day = _EPOCH + timedelta(days=number)
            self._days.setdefault(day, []).append(rows.filter(pa.array(day_numbers == number)))
            self._metadata.setdefault(day, metadata)
        self.size += rows.num_rows

    def rows(self, lo: int, hi: int) -> pa.Table:
        found = [HELD_SCHEMA.empty_table()]
        for tables in self._days.values():
            for table in tables:
                seqs = table.column("seq")
                if seqs[0].as_py() <= hi and seqs[-1].as_py() >= lo:
                    found.append(_between(table.select(["seq", "raw"]), lo, hi))
        return pa.concat_tables(found)

    def take_days(self) -> Iterator[tuple[date, pa.Table, dict[bytes, bytes]]]:
        """Each day's rows sorted by seq, with the metadata of the first file they came from;
        the pending rows are emptied."""
        days, metadata = self._days, self._metadata
        self._days, self._metadata, self.size = {}, {}, 0
        for day in sorted(days):
            yield day, pa.concat_tables(days[day]).sort_by("seq"), metadata[day]
