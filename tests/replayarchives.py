"""Archives for the replay tests: the fixture feed as the real recorder archives it, synthetic
ones with chosen row groups, segments, gaps and timestamps, and ways to damage them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.schemas.archive import (
    GAP_SCHEMA,
    RAW_SCHEMA,
    ArchiveLayout,
)
from replica.schemas.files import publish_parquet

from replica.demo import DEMO_FEED
from tests.conftest import reached, record
from tests.feedserver import ScriptedFeed, Send
from tests.rawarchive import write_archive

FEED_LINES = DEMO_FEED.read_text(encoding="utf-8").splitlines()
FEED_FIRST_SEQ, FEED_LAST_SEQ = 482_910_000, 482_913_004
FEED_GAP = (482_911_500, 482_911_504)


def record_fixture_feed(archive: Path) -> Path:
    """The bundled feed (3000 commands, one gap) archived by the real recorder."""
    with ScriptedFeed([Send(tuple(FEED_LINES))]) as feed:
        record(feed.url, archive, reached(FEED_LAST_SEQ))
    return archive


def rows_for(seqs: list[int], ts_ms: list[int] | None = None, size: int = 16) -> list[dict]:
    """Raw rows for ``seqs``: ts_ms 10 ms apart unless given, payloads of ``size`` bytes."""
    base = 1_795_219_080_000  # 2026-11-20T23:58:00Z
    ts_ms = ts_ms or [base + 10 * i for i in range(len(seqs))]
    return [
        {
            "seq": seq,
            "ts_ms": ts,
            "ingest_ts_us": ts * 1000 + 300,
            "publish_ts_us": ts * 1000 + 320,
            "recv_ts_us": ts * 1000 + 500 + i,
            "raw": (f"cmd-{seq}-".encode() * size)[:size],
        }
        for i, (seq, ts) in enumerate(zip(seqs, ts_ms, strict=True))
    ]


def write_segments(
    archive: Path, rows: list[dict], *, per_segment: int = 1000, row_group_rows: int = 100
) -> list[Path]:
    """Segments as the recorder writes them, with small row groups so that tests can see them
    skipped."""
    segments = write_archive(archive, rows, per_segment, row_group_rows)
    ArchiveLayout(archive).raw_dir.mkdir(parents=True, exist_ok=True)
    return [segment.path for segment in segments]


def write_gap_records(archive: Path, gaps: list[tuple[int, int, str]]) -> None:
    rows = [
        {
            "from_seq": low,
            "to_seq": high,
            "missing": high - low + 1,
            "cause": cause,
            "detected_ts_us": 1,
            "before_ts_ms": None,
            "after_ts_ms": 1_795_219_080_000,
        }
        for low, high, cause in gaps
    ]
    path = archive / "gaps" / "date=2026-11-20" / "test.parquet"
    publish_parquet(pa.Table.from_pylist(rows, schema=GAP_SCHEMA), path, compression="zstd")


def damage_row_group(path: Path, index: int) -> None:
    """Overwrite the payload pages of one row group, keeping the footer: reading that group
    fails, every other group still reads."""
    column = pq.ParquetFile(path).metadata.row_group(index).column(RAW_SCHEMA.names.index("raw"))
    start = column.dictionary_page_offset or column.data_page_offset
    with open(path, "r+b") as file:
        file.seek(start)
        file.write(b"\xff" * column.total_compressed_size)


def frame_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]
