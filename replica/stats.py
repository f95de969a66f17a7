"""Per-day figures a data team watches: how much was recorded, how complete it is, what it costs
on disk, and how many rows each decoded table got.

Counts come from the SQL views (``replica.sql``), so they agree with what a query sees; bytes on
disk come from the files themselves, every table of the day included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from replica.replay.records import ReplayRecord
from replica.schemas.archive import ArchiveLayout, day_partition
from replica.schemas.decoded import DECODED_DIR
from replica.schemas.frames import command_frame
from replica.schemas.heals import heals_dir
from replica.sql import connect, view_names

# A feed frame's bytes apart from its payload's hex and four of its integers' digits.
_FRAME_OVERHEAD = len(command_frame(ReplayRecord(0, 0, 0, 0, 0, b"", 0.0))) - 4
_PER_DAY_SQL = f"""
SELECT c.date, c.from_seq, c.to_seq, c.recorded + c.healed, c.healed, c.missing,
    c.percent_complete,
    coalesce(g.records, 0) AS gap_records, f.frame_bytes
FROM completeness c
LEFT JOIN (SELECT date, count(*) AS records FROM gaps GROUP BY date) g USING (date)
JOIN (
    SELECT date, sum({_FRAME_OVERHEAD} + 2 * octet_length(raw) + length(CAST(seq AS VARCHAR))
        + length(CAST(ts_ms AS VARCHAR)) + length(CAST(ingest_ts_us AS VARCHAR))
        + length(CAST(publish_ts_us AS VARCHAR)))::BIGINT AS frame_bytes
    FROM raw_cmds WHERE date BETWEEN $first AND $last GROUP BY date
) f USING (date)
ORDER BY c.date"""
_RAW_TABLES = (
    "raw_cmds",
    "gaps",
    "quarantine",
    "heals",
    "completeness",
    "arrivals",
    "connections",
)


@dataclass
class DayStats:
    date: date
    from_seq: int
    to_seq: int
    commands: int  # recorded and healed
    healed: int  # added by ``replica heal``
    missing: int
    percent_complete: float
    gap_records: int
    frame_bytes: int  # the same commands as the feed's JSON frames
    raw_bytes: int = 0  # raw segments
    decoded_bytes: int = 0
    total_bytes: int = 0  # raw, gaps, quarantine, heals and decoded
    decoded_rows: dict[str, int] = field(default_factory=dict)

    @property
    def compression(self) -> float:
        """Raw bytes on disk per byte of JSON frames."""
        return self.raw_bytes / self.frame_bytes if self.frame_bytes else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "date": self.date.isoformat(), "compression": self.compression}


def archive_stats(root: Path, first: date = date.min, last: date = date.max) -> list[DayStats]:
    """The figures of each UTC day from ``first`` to ``last`` (inclusive) that has commands:
    a report on one night reads that night's payloads only."""
    days_wanted = {"first": first, "last": last}
    with connect(root) as db:
        rows = db.execute(_PER_DAY_SQL, days_wanted).fetchall()
        days = {row[0]: DayStats(*row) for row in rows}
        for table in view_names(db):
            if table in _RAW_TABLES:
                continue
            query = (
                f"SELECT date, count(*) FROM {table} WHERE date BETWEEN $first AND $last "
                "GROUP BY date"
            )
            for day, rows in db.execute(query, days_wanted).fetchall():
                if day in days:
                    days[day].decoded_rows[table] = rows
    layout = ArchiveLayout(root)
    for day in days.values():
        partition = day_partition(day.date)
        day.raw_bytes = _bytes_under([layout.raw_dir / partition])
        day.decoded_bytes = _bytes_under(list((root / DECODED_DIR).glob(f"*/{partition}")))
        day.total_bytes = (
            day.raw_bytes
            + day.decoded_bytes
            + _bytes_under(
                [
                    layout.gaps_dir / partition,
                    layout.quarantine_dir / partition,
                    heals_dir(layout) / partition,
                ]
            )
        )
    return list(days.values())


def _bytes_under(directories: list[Path]) -> int:
    return sum(
        path.stat().st_size
        for directory in directories
        for path in directory.rglob("*.parquet")
        if path.is_file()
    )
