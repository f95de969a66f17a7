"""``schemas.archive.ArchiveLayout``: opening an archive, and what a segment's path says."""

from __future__ import annotations

from pathlib import Path

import pytest
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError

import replica
from replica.maintenance.compact import compact
from replica.maintenance.verify import read_gaps, verify
from replica.sql import table_views


@pytest.mark.parametrize(
    "read", [ArchiveLayout.open, replica.open, verify, read_gaps, compact, table_views]
)
def test_every_reader_refuses_a_missing_archive_with_one_message(read, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ArchiveError) as info:
        read(missing)
    assert str(info.value) == f"archive {missing} does not exist or is not a directory"
