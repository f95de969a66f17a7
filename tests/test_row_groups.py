"""Raw row groups are bounded in payload bytes, not only in rows: a node block is ~0.5 MB where
a feed command is a few hundred bytes, and every reader (decode, verify, replay) holds a row
group or a batch of that size at a time."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from replica.decoder.archive import decode_archive
from replica.schemas import archive
from replica.schemas.archive import (
    RAW_ROW_GROUP_BYTES,
    RAW_ROW_GROUP_ROWS,
    ArchiveLayout,
    raw_batch_rows,
    raw_row_group_rows,
)

from replica.maintenance.node_import import import_node
from tests.test_import_node import BASE, node_file


@given(st.integers(1, 10**9), st.integers(1, 10**13))
def test_a_row_group_holds_at_most_its_rows_and_about_its_bytes(rows: int, size: int) -> None:
    per_group = raw_row_group_rows(rows, size)
    assert 1 <= per_group <= RAW_ROW_GROUP_ROWS
    if per_group > 1:  # one row is a row group, however big
        assert per_group * size / rows <= RAW_ROW_GROUP_BYTES * (1 + 1e-9)


def test_imported_node_blocks_are_written_and_decoded_in_groups_bounded_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 16 << 10  # a few blocks of the fixture's
    monkeypatch.setattr(archive, "RAW_ROW_GROUP_BYTES", bound)
    import_node([node_file(tmp_path / "node", BASE, 60)], tmp_path / "archive")
    [segment] = ArchiveLayout.open(tmp_path / "archive").segments()
    metadata = pq.read_metadata(segment.path)
    assert metadata.num_row_groups > 3
    raw = metadata.schema.names.index("raw")
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        largest_block = max(len(b) for b in pq.read_table(segment.path).column("raw").to_pylist())
        assert group.column(raw).total_uncompressed_size <= bound + largest_block + 1024
    assert raw_batch_rows(metadata) < metadata.num_rows
    assert decode_archive(tmp_path / "archive").failed == []
