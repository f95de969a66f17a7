"""Decoded-table views union files by name only when their decoder versions differ: unioning
holds every file's footer at once while the view binds, which a year of hourly files makes half
a gigabyte; a table decoded by one version has one schema and needs none of it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.decoder.archive import decode_archive
from replica.schemas.metadata import DECODER_KEY

from replica.sql import connect, table_views
from tests.rawarchive import feed_rows, write_archive


def _views(root: Path) -> dict[str, bool]:
    return {view.name: view.union_by_name() for view in table_views(root) if view.has_files}


def test_one_decoder_version_needs_no_union_and_two_get_it(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    write_archive(root, feed_rows(), per_segment=500)
    decode_archive(root)
    views = _views(root)
    assert "fills" in views and not any(views.values())
    with connect(root) as db:
        (before,) = db.execute("SELECT count(*) FROM fills").fetchone()
    # One fills file as another decoder version would write it: an extra column.
    path = sorted((root / "decoded" / "fills").rglob("*.parquet"))[-1]
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, DECODER_KEY: b"0.0.1:older"}
    table = table.append_column("venue", pa.array(["x"] * table.num_rows)).replace_schema_metadata(
        metadata
    )
    pq.write_table(table, path)
    views = _views(root)
    assert views["fills"] and not views["orders"]
    with connect(root) as db:
        assert db.execute("SELECT count(*), count(venue) FROM fills").fetchone() == (
            before,
            table.num_rows,
        )
