"""Archives for the compaction tests: the fixture feed (3000 commands, one 5-seq gap with its gap
record) spread over five UTC hours across midnight, in segments of 40 rows, as the recorder
would have sealed them; and what is read back to compare an archive before and after."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.decoder.archive import decode_archive
from replica.schemas.archive import ArchiveLayout
from replica.schemas.decoded import SEGMENTS_TABLE

from tests.rawarchive import feed_rows, write_archive
from tests.replayarchives import FEED_GAP, write_gap_records

DAY1, DAY2 = date(2026, 11, 20), date(2026, 11, 21)
START_MS = 1_795_212_000_000  # 2026-11-20T22:00Z: hours 22 and 23 of DAY1, 00 to 02 of DAY2
AFTER = datetime(2026, 11, 22, 1, tzinfo=UTC)  # both days closed
PER_SEGMENT = 40
STORE_SEGMENT_ROWS = 200  # three segments an hour: still something to merge in each


def build_archive(root: Path, start_ms: int = START_MS, per_segment: int = PER_SEGMENT) -> Path:
    """The archive; ``per_segment`` rows at most per segment (an object store's tests take
    fewer, larger ones: each file there is a few requests)."""
    rows = feed_rows()
    for i, row in enumerate(rows):
        row["ts_ms"] = start_ms + 6_000 * i
    write_archive(root, rows, per_segment)
    write_gap_records(root, [(*FEED_GAP, "reconnect")])
    return root


def decoded_archive(root: Path, per_segment: int = PER_SEGMENT) -> Path:
    decode_archive(build_archive(root, per_segment=per_segment))
    return root


def raw_table(root: Path) -> pa.Table:
    """Every command of the archive, as one table in seq order."""
    tables = [pq.read_table(s.path) for s in ArchiveLayout(root).segments()]
    return pa.concat_tables(t.replace_schema_metadata(None) for t in tables)


def decoded_tables(root: Path) -> dict[str, pa.Table]:
    """Each decoded table's rows, sorted by (seq, idx)."""
    tables = {}
    for table_dir in sorted((root / "decoded").iterdir()):
        if table_dir.name == SEGMENTS_TABLE:
            continue
        parts = [
            pq.read_table(p).replace_schema_metadata(None) for p in table_dir.rglob("*.parquet")
        ]
        tables[table_dir.name] = pa.concat_tables(parts).sort_by(
            [("seq", "ascending"), ("idx", "ascending")]
        )
    return tables


def raw_files(root: Path, day: date) -> list[Path]:
    return sorted((root / "raw" / f"date={day}").rglob("*.parquet"))
