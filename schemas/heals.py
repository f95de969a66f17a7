"""Where an archive records the seqs ``replica heal`` added, and the schema of those records.

    ARCHIVE/heals/date=YYYY-MM-DD/<unit>.parquet   seq ranges filled from another source

Gap records are never rewritten: they stay the history of what a recorder (or an import) missed.
A heal record says which of those seqs were filled afterwards, when and from where, so a gap is
still missing exactly where no heal record covers it. Records are dated by the commands they
healed (their ts_ms), so a day's completeness reads that day's partition only.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError
from replica.schemas.storepath import read_table

HEALS_DIR = "heals"

HEAL_SCHEMA = pa.schema(
    [
        pa.field("from_seq", pa.int64(), nullable=False),
        pa.field("to_seq", pa.int64(), nullable=False),  # inclusive; every seq between was added
        pa.field("healed", pa.int64(), nullable=False),  # to_seq - from_seq + 1
        pa.field("source", pa.string(), nullable=False),  # the archive or node file they came from
        pa.field("healed_ts_us", pa.int64(), nullable=False),
    ]
)


def heals_dir(layout: ArchiveLayout) -> Path:
    return layout.root / HEALS_DIR


def healed_ranges(layout: ArchiveLayout) -> list[tuple[int, int]]:
    """Every healed seq range, sorted (heal records never overlap: a seq is added once)."""
    ranges: list[tuple[int, int]] = []
    for path in layout.table_files(heals_dir(layout)):
        try:
            table = read_table(path, columns=["from_seq", "to_seq"])
        except Exception as exc:
            raise ArchiveError(f"cannot read heal file {path}: {exc}") from exc
        columns = table.column("from_seq").to_pylist(), table.column("to_seq").to_pylist()
        ranges += zip(*columns, strict=True)
    return sorted(ranges)
