"""Concatenating Parquet files into one, a row group at a time: how compaction merges a day's
small files, raw or decoded, with memory bounded by a row group rather than by the day."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from replica.schemas.errors import ArchiveError
from replica.schemas.files import PAGE_CHECKSUMS
from replica.schemas.storepath import parquet_file


def concatenate(
    sources: Iterable[Path], path: Path, schema: pa.Schema, row_group_rows: int, **options: Any
) -> None:
    """Write the rows of ``sources``, in order, to the new file ``path`` with ``schema`` (and its
    metadata), in row groups of ``row_group_rows`` rows but the last, and fsync it.

    Row groups are cut by count alone, never where an input file ended, so the output depends
    only on the rows: the same inputs give the same bytes.
    """
    held: list[pa.Table] = []
    rows = 0
    with open(path, "xb") as sink:
        with pq.ParquetWriter(sink, schema, **options, **PAGE_CHECKSUMS) as writer:
            for source in sources:
                for group in _row_groups(source):
                    held.append(group)
                    rows += group.num_rows
                    while rows >= row_group_rows:
                        table = pa.concat_tables(held)
                        writer.write_table(table.slice(0, row_group_rows), row_group_rows)
                        held, rows = [table.slice(row_group_rows)], rows - row_group_rows
            if rows:
                writer.write_table(pa.concat_tables(held), row_group_rows)
        sink.flush()
        os.fsync(sink.fileno())


def _row_groups(source: Path) -> Iterator[pa.Table]:
    """The row groups of ``source``; ``ArchiveError`` naming it if it cannot be read."""
    try:
        parquet = parquet_file(source)
        for index in range(parquet.num_row_groups):
            yield parquet.read_row_group(index)
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(f"cannot read {source}: {exc}") from None
