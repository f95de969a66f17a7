"""The numbers of a report, aggregated in DuckDB through the views of ``replica sql``.

Every series is per minute or per day, never per command, so a day of ten million commands
comes back as a few thousand rows. Minutes are whole minutes since the epoch (UTC): of ``ts_ms``
for commands, of ``recv_ts_us`` for quarantined frames and for arrivals at several endpoints.
Latencies are ``quantile_disc`` (a latency that occurred), p50 and p99, in microseconds.

Per-day figures (commands, completeness, bytes, ratio to JSON frames, decoded rows) are those of
``replica stats`` for every UTC day the range touches, whole days even where the range cuts one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from replica.report.endpoints import endpoint_figures
from replica.schemas.frames import MAX_TS_MS
from replica.sql import connect, view_names
from replica.stats import archive_stats

# $start_ms, $end_ms: the range, [start, end); $first, $last: the dates it touches, so that
# DuckDB opens only those partitions.
_COMMANDS = "date BETWEEN $first AND $last AND ts_ms >= $start_ms AND ts_ms < $end_ms"

SPAN_SQL = f"SELECT min(ts_ms), max(ts_ms) FROM raw_cmds WHERE {_COMMANDS}"

PER_MINUTE_SQL = f"""
SELECT minute, commands, vendor[1] AS vendor_p50_us, vendor[2] AS vendor_p99_us,
    network[1] AS network_p50_us, network[2] AS network_p99_us
FROM (
    SELECT ts_ms // 60000 AS minute, count(*) AS commands,
        quantile_disc(publish_ts_us - ingest_ts_us, [0.5, 0.99]) AS vendor,
        quantile_disc(recv_ts_us - publish_ts_us, [0.5, 0.99]) AS network
    FROM raw_cmds WHERE {_COMMANDS}
    GROUP BY minute
) ORDER BY minute"""

# A gap overlaps the range if it began before its end and ended after its start.
_GAPS = "coalesce(before_ts_ms, after_ts_ms) < $end_ms AND after_ts_ms >= $start_ms"

GAPS_BY_CAUSE_SQL = f"""
SELECT date, cause, count(*) AS records, sum(missing)::BIGINT AS missing
FROM gaps WHERE {_GAPS}
GROUP BY date, cause ORDER BY date, cause"""

# Gaps as time bands, those of one cause less than a minute apart merged into one, so that a
# night of many short gaps draws a few bands rather than thousands.
GAP_BANDS_SQL = f"""
WITH g AS (
    SELECT cause, missing, coalesce(before_ts_ms, after_ts_ms) AS from_ms, after_ts_ms AS to_ms
    FROM gaps WHERE {_GAPS}
), starts AS (
    SELECT *, coalesce(from_ms > 60000 + max(to_ms) OVER (
        PARTITION BY cause ORDER BY from_ms, to_ms
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), true)::INTEGER AS starts
    FROM g
), islands AS (
    SELECT *, sum(starts) OVER (PARTITION BY cause ORDER BY from_ms, to_ms) AS island FROM starts
)
SELECT cause, min(from_ms) AS from_ms, max(to_ms) AS to_ms, count(*) AS records,
    sum(missing)::BIGINT AS missing
FROM islands GROUP BY cause, island ORDER BY from_ms, cause"""

_QUARANTINE = "recv_ts_us >= $start_ms * 1000 AND recv_ts_us < $end_ms * 1000"

QUARANTINE_SQL = f"""
SELECT recv_ts_us // 60000000 AS minute, kind, count(*) AS frames
FROM quarantine WHERE {_QUARANTINE}
GROUP BY minute, kind ORDER BY minute, kind"""

QUARANTINE_BY_DAY_SQL = f"""
SELECT date, kind, count(*) AS frames FROM quarantine WHERE {_QUARANTINE}
GROUP BY date, kind ORDER BY date, kind"""

_DAYS = "date BETWEEN $first AND $last"

ACTIONS_SQL = f"""
SELECT date, kind, count(*) AS actions FROM actions WHERE {_DAYS}
GROUP BY date, kind ORDER BY date, actions DESC, kind"""
# The same per action type, with how many gave fact rows and how many an undecoded row, where
# the decoded files are recent enough to say (the action_coverage view is defined).
COVERAGE_SQL = f"""
SELECT date, kind, actions, with_facts, undecoded FROM action_coverage WHERE {_DAYS}
ORDER BY date, actions DESC, kind"""

# Undecoded rows name no action type; their reason's first clause does, with numbers as N
# ("node action N", "protobuf"), which keeps the classes few.
UNDECODED_SQL = f"""
SELECT date, regexp_replace(regexp_extract(reason, '^[^:]*'), '[0-9]+', 'N', 'g') AS reason,
    count(*) AS rows, count(DISTINCT seq) AS commands
FROM undecoded WHERE {_DAYS}
GROUP BY ALL ORDER BY date, rows DESC, reason"""


@dataclass(frozen=True)
class Range:
    """What a report covers: commands with ``ts_ms`` in [start_ms, end_ms)."""

    start_ms: int
    end_ms: int

    @property
    def first(self) -> date:
        return _utc(self.start_ms).date()

    @property
    def last(self) -> date:
        return _utc(max(self.start_ms, self.end_ms - 1)).date()

    def parameters(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms} | self.days()

    def days(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last}

    def dates(self) -> list[date]:
        """Each UTC date the range touches."""
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


WHOLE_ARCHIVE = Range(0, MAX_TS_MS + 1)


def _utc(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def gather(root: Path, asked: Range) -> dict[str, Any]:
    """Every figure of the report on ``asked``, as JSON-ready values: lists of rows (dicts),
    per-minute series as columns."""
    with connect(root) as db:
        views = set(view_names(db))
        parameters = asked.parameters()
        first_ms, last_ms = db.execute(SPAN_SQL, parameters).fetchone() or (None, None)
        data: dict[str, Any] = {
            "range": {"start_ms": asked.start_ms, "end_ms": asked.end_ms},
            "commands_span": {"first_ts_ms": first_ms, "last_ts_ms": last_ms},
            "per_minute": _columns(db, PER_MINUTE_SQL, parameters),
            "gaps_by_cause": _rows(db, GAPS_BY_CAUSE_SQL, parameters),
            "gap_bands": _rows(db, GAP_BANDS_SQL, parameters),
            "quarantine": _rows(db, QUARANTINE_SQL, parameters),
            "quarantine_by_day": _rows(db, QUARANTINE_BY_DAY_SQL, parameters),
            "actions": _rows(
                db, COVERAGE_SQL if "action_coverage" in views else ACTIONS_SQL, asked.days()
            ),
            "undecoded": _rows(db, UNDECODED_SQL, asked.days()),
            "endpoints": None,
        }
        if "arrivals" in views:
            data["endpoints"] = endpoint_figures(db, parameters)
    days = None if asked == WHOLE_ARCHIVE else asked.dates()
    data["days"] = [day.to_json() for day in archive_stats(root, days)]
    return data


def _rows(
    db: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    names, rows = _query(db, sql, parameters)
    return [_json_row(dict(zip(names, row, strict=True))) for row in rows]


def _columns(db: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, Any]) -> dict[str, Any]:
    names, rows = _query(db, sql, parameters)
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def _query(
    db: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    result = db.execute(sql, _named(sql, parameters))
    return [column[0] for column in result.description or ()], result.fetchall()


def _named(sql: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The ``parameters`` that ``sql`` uses: DuckDB refuses any other."""
    return {name: value for name, value in parameters.items() if f"${name}" in sql}


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()}
