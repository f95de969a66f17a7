"""Per-day figures a data team watches: how much was recorded, how complete it is, what it costs
on disk, and how many rows each decoded table got.

Counts come from the SQL views (``replica.sql``), so they agree with what a query sees; bytes on
disk come from the files themselves, every table of the day included.

For some days (``--date``, ``--since``), the views would still list and read the whole archive:
instead, counts come from those days' Parquet footers and segment names (what the views give on
an archive ``verify`` passes), the previous day's last seq from the names of its segments, and
only the size against JSON frames reads data, the day's payload lengths, through DuckDB.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from replica.maintenance.days import raw_days, segments_before
from replica.replay.records import ReplayRecord
from replica.schemas.archive import HOUR_FILES, ArchiveLayout, day_partition
from replica.schemas.decoded import ACTION_COVERAGE_SQL, DECODED_DIR, DECODED_VIEWS
from replica.schemas.errors import ArchiveError
from replica.schemas.frames import command_frame
from replica.schemas.heals import heals_dir
from replica.schemas.storepath import read_metadata, read_table
from replica.sql import connect, view_names
from replica.sql_storage import open_tree

# A feed frame's bytes apart from its payload's hex and four of its integers' digits.
_FRAME_OVERHEAD = len(command_frame(ReplayRecord(0, 0, 0, 0, 0, b"", 0.0))) - 4
_FRAME_BYTES = f"""sum({_FRAME_OVERHEAD} + 2 * octet_length(raw) + length(CAST(seq AS VARCHAR))
    + length(CAST(ts_ms AS VARCHAR)) + length(CAST(ingest_ts_us AS VARCHAR))
    + length(CAST(publish_ts_us AS VARCHAR)))::BIGINT"""
_PER_DAY_SQL = f"""
SELECT c.date, c.from_seq, c.to_seq, c.recorded + c.healed, c.healed, c.missing,
    c.percent_complete,
    coalesce(g.records, 0) AS gap_records, f.frame_bytes
FROM completeness c
LEFT JOIN (SELECT date, count(*) AS records FROM gaps GROUP BY date) g USING (date)
JOIN (
    SELECT date, {_FRAME_BYTES} AS frame_bytes FROM raw_cmds GROUP BY date
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
# Node blocks: the share that carried the node's responses (a node writes them only when
# started with --replica-cmds-style actions-and-responses), and per action type the coverage.
_RESPONSES_SQL = """SELECT date, avg(CASE WHEN has_responses THEN 1.0 ELSE 0.0 END) FROM blocks
GROUP BY date"""
_COVERAGE_SQL = """SELECT date, coalesce(kind, '(no type)'), actions, with_facts, undecoded
FROM action_coverage ORDER BY date, kind"""


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
    responses_share: float | None = None  # of node blocks, those with the node's responses
    # per node action type: actions, those with fact rows, those with undecoded rows
    action_coverage: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def compression(self) -> float:
        """Raw bytes on disk per byte of JSON frames."""
        return self.raw_bytes / self.frame_bytes if self.frame_bytes else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "date": self.date.isoformat(),
            "compression": self.compression,
            "action_coverage": {kind: list(n) for kind, n in self.action_coverage.items()},
        }


def archive_stats(root: Path, days: list[date] | None = None) -> list[DayStats]:
    """Each day's figures: every day's, or those of ``days`` that have commands."""
    if days is not None:
        layout = ArchiveLayout.open(root)
        every = raw_days(layout)
        chosen = [_day_stats(layout, day, every) for day in days]
        return [_add_bytes(root, day) for day in chosen if day is not None]
    with connect(root) as db:
        try:
            found = _day_counts(db)
        except duckdb.Error as exc:  # a damaged file, which DuckDB names when it can
            raise ArchiveError(
                f"cannot count {root}: {exc}; 'replica verify {root}' lists damaged files"
            ) from None
    return [_add_bytes(root, day) for day in found.values()]


def _day_counts(db: duckdb.DuckDBPyConnection) -> dict[date, DayStats]:
    days = {row[0]: DayStats(*row) for row in db.sql(_PER_DAY_SQL).fetchall()}
    names = view_names(db)
    for table in names:
        if table in _RAW_TABLES or table in DECODED_VIEWS:
            continue
        for day, rows in db.sql(f"SELECT date, count(*) FROM {table} GROUP BY date").fetchall():
            if day in days:
                days[day].decoded_rows[table] = rows
    _add_node_figures(db, days, coverage="action_coverage" in names)
    return days


def _add_node_figures(
    db: duckdb.DuckDBPyConnection, days: dict[date, DayStats], coverage: bool
) -> None:
    """The share of node blocks with responses, and (``coverage``: the view is defined) each
    action type's coverage, from ``db``'s ``blocks`` and ``action_coverage``."""
    for day, share in db.sql(_RESPONSES_SQL).fetchall():
        if day in days and share is not None:
            days[day].responses_share = float(share)
    for day, kind, *counts in db.sql(_COVERAGE_SQL).fetchall() if coverage else []:
        if day in days:
            days[day].action_coverage[kind] = (counts[0], counts[1], counts[2])


def _add_bytes(root: Path, day: DayStats) -> DayStats:
    layout = ArchiveLayout(root)
    partition = day_partition(day.date)
    day.raw_bytes = _bytes_under([layout.raw_dir / partition])
    day.decoded_bytes = _bytes_under(list((root / DECODED_DIR).glob(f"*/{partition}")))
    day.total_bytes = (
        day.raw_bytes
        + day.decoded_bytes
        + _bytes_under(
            [
                dir_ / partition
                for dir_ in (layout.gaps_dir, layout.quarantine_dir, heals_dir(layout))
            ]
        )
    )
    return day


def _day_stats(layout: ArchiveLayout, day: date, every: list[date]) -> DayStats | None:
    """One day's counts from its footers and names, as the views would give them; None if it
    has no commands."""
    segments = layout.segments(day)
    if not segments:
        return None
    first, last = segments[0].first_seq, max(s.last_seq for s in segments)
    before = segments_before(layout, day, every)
    since = max(s.last_seq for s in before) + 1 if before else first
    commands = _footer_rows([s.path for s in segments])  # recorded and healed
    healed = _healed_rows(layout, day)
    span = last - since + 1
    partition = day_partition(day)
    with _duckdb(layout) as db:
        glob = str(layout.raw_dir / partition / HOUR_FILES.split("/", 1)[1])
        (frame_bytes,) = db.execute(
            f"SELECT {_FRAME_BYTES} FROM read_parquet(?)", [glob]
        ).fetchone() or (0,)
    percent = math.floor(1000000.0 * commands / span) / 10000
    gap_records = _footer_rows(sorted((layout.gaps_dir / partition).glob("*.parquet")))
    stats = DayStats(
        day, since, last, commands, healed, span - commands, percent, gap_records, frame_bytes
    )
    decoded = layout.root / DECODED_DIR
    for table_dir in sorted(decoded.iterdir()) if decoded.is_dir() else []:
        if table_dir.name[0] not in "._" and table_dir.is_dir():
            rows = _footer_rows(sorted((table_dir / partition).glob("*.parquet")))
            if rows:
                stats.decoded_rows[table_dir.name] = rows
    if "blocks" in stats.decoded_rows:
        _add_day_node_figures(layout, stats)
    return stats


def _duckdb(layout: ArchiveLayout) -> duckdb.DuckDBPyConnection:
    """A connection without views that reads the archive's files, local or on a store."""
    db = duckdb.connect()
    open_tree(layout.root).register(db)
    return db


def _add_day_node_figures(layout: ArchiveLayout, stats: DayStats) -> None:
    """``_add_node_figures`` over the day's own decoded files, not the views of every day."""
    partition = day_partition(stats.date)
    decoded = layout.root / DECODED_DIR
    with _duckdb(layout) as db:
        for table in ("blocks", "actions", "undecoded"):
            files = [str(path) for path in sorted((decoded / table / partition).glob("*.parquet"))]
            if files:
                source = f"read_parquet({files!r}, union_by_name = true)"
            elif table == "undecoded":  # a day where everything decoded
                source = "(SELECT NULL::BIGINT AS seq, NULL::INTEGER AS idx WHERE false)"
            else:
                continue
            db.execute(
                f"CREATE VIEW {table} AS SELECT *, DATE '{stats.date}' AS date FROM {source}"
            )
        names = {name for (name,) in db.sql("SELECT view_name FROM duckdb_views()").fetchall()}
        coverage = "actions" in names and "facts" in db.sql("SELECT * FROM actions LIMIT 0").columns
        if coverage:
            db.execute(f"CREATE VIEW action_coverage AS {ACTION_COVERAGE_SQL}")
        _add_node_figures(db, {stats.date: stats}, coverage)


def _healed_rows(layout: ArchiveLayout, day: date) -> int:
    """The seqs ``replica heal`` added to ``day``: its heal records' counts (small files)."""
    paths = sorted((heals_dir(layout) / day_partition(day)).glob("*.parquet"))
    try:
        counts = [read_table(path, columns=["healed"]).column(0) for path in paths]
        return sum(sum(column.to_pylist()) for column in counts)
    except Exception as exc:
        raise ArchiveError(f"cannot read the heal records of {day}: {exc}") from exc


def _footer_rows(paths: list[Path]) -> int:
    rows = 0
    for path in paths:
        try:
            rows += read_metadata(path).num_rows
        except Exception as exc:
            raise ArchiveError(f"cannot read the footer of {path}: {exc}") from exc
    return rows


def _bytes_under(directories: list[Path]) -> int:
    return sum(
        path.stat().st_size
        for directory in directories
        for path in directory.rglob("*.parquet")
        if path.is_file()
    )
