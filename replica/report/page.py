"""The report as one self-contained HTML page: tables, inline SVG plots, and every aggregated
number in a ``<script type="application/json" id="report-data">`` block for machines.

The page has no script to run and loads nothing: it opens offline, from a mail or a bucket.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from html import escape
from typing import Any

from replica.report import plots
from replica.report.data import WHOLE_ARCHIVE

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #555; margin: 0; } .verdict { font-size: 16px; margin: 12px 0; }
.whole { color: #0a6b2d; } .holes { color: #a33; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th.text, td.text { text-align: left; }
figure { margin: 8px 0 20px; } figure svg { width: 100%; height: auto; }
figcaption { color: #555; font-size: 13px; } .none { color: #555; font-style: italic; }
"""


def render(data: dict[str, Any], archive: str, version: str, generated: datetime) -> str:
    """The page for ``data`` (from ``replica.report.data.gather``)."""
    span = _span(data)
    sections = [
        _header(data, archive, version, generated),
        _days(data),
        _commands(data, span),
        _latency(data, span),
        _quarantine(data, span),
        _endpoints(data, span),
        _decoded(data),
    ]
    # No "<" at all inside the script element: nothing in the data can close it or open a tag.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>replica report: {escape(archive)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(sections)
        + f'\n<script type="application/json" id="report-data">{payload}</script>\n'
        "</body></html>\n"
    )


def _span(data: dict[str, Any]) -> tuple[int, int]:
    """The minutes every time plot spans: the range asked, or where it is open, the minutes
    that have something to plot."""
    endpoints = data["endpoints"] or {"lag": []}
    minutes = [
        *data["per_minute"]["minute"],
        *(row["minute"] for row in data["quarantine"]),
        *(row["minute"] for row in endpoints["lag"]),
    ] or [0]
    asked = data["range"]
    first = min(minutes) if asked["start_ms"] == WHOLE_ARCHIVE.start_ms else asked["start_ms"]
    last = max(minutes) + 1 if asked["end_ms"] == WHOLE_ARCHIVE.end_ms else asked["end_ms"]
    if asked["start_ms"] != WHOLE_ARCHIVE.start_ms:
        first //= 60_000
    if asked["end_ms"] != WHOLE_ARCHIVE.end_ms:
        last = -(-last // 60_000)
    return first, last


def _utc(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "none"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _header(data: dict[str, Any], archive: str, version: str, generated: datetime) -> str:
    asked, span = data["range"], data["commands_span"]
    days = data["days"]
    commands = sum(day["commands"] for day in days)
    missing = sum(day["missing"] for day in days)
    gaps = sum(row["records"] for row in data["gaps_by_cause"])
    quarantined = sum(row["frames"] for row in data["quarantine_by_day"])
    # Whole is what completeness says: a gap record can outlive its gap once it is healed.
    whole = commands > 0 and missing == 0
    verdict = (
        f"{commands:,} commands, {missing:,} seqs missing, {gaps:,} gap records, "
        f"{quarantined:,} frames quarantined"
    )
    word = "whole" if whole else "no commands" if not commands else "holes"
    return (
        f"<h1>replica report: {escape(archive)}</h1>\n"
        f'<p class="meta">range {escape(_range_text(asked))}; commands from '
        f"{_utc(span['first_ts_ms'])} to {_utc(span['last_ts_ms'])}</p>\n"
        f'<p class="meta">replica {escape(version)}; made '
        f"{generated.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}</p>\n"
        f'<p class="verdict {"whole" if whole else "holes"}"><b>{word}</b>: {verdict}</p>'
    )


def _range_text(asked: dict[str, Any]) -> str:
    if (asked["start_ms"], asked["end_ms"]) == (WHOLE_ARCHIVE.start_ms, WHOLE_ARCHIVE.end_ms):
        return "the whole archive"
    return f"{_utc(asked['start_ms'])} to {_utc(asked['end_ms'])} (end excluded)"


def _table(headers: list[str], rows: list[list[Any]], text_columns: int = 1) -> str:
    """Rows under headers, the first ``text_columns`` columns text, the others numbers."""
    head = "".join(
        f'<th class="text">{escape(h)}</th>' if i < text_columns else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{escape(str(v))}</td>' if i < text_columns else f"<td>{_n(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def _percent_down(percent: float) -> str:
    """Two decimals rounded down, as ``replica stats`` prints them: only a whole day reads 100."""
    return f"{math.floor(percent * 100) / 100:.2f}"


def _none(text: str) -> str:
    return f'<p class="none">{escape(text)}</p>'


def _figure(name: str, svg: str, caption: str) -> str:
    return (
        f'<figure class="plot" id="plot-{name}">{svg}'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _days(data: dict[str, Any]) -> str:
    rows = [
        [
            day["date"], day["commands"], day["healed"], day["missing"],
            _percent_down(day["percent_complete"]), day["gap_records"], day["raw_bytes"] / 1e6,
            day["compression"], day["decoded_bytes"] / 1e6, day["total_bytes"] / 1e6,
        ]
        for day in data["days"]
    ]  # fmt: skip
    headers = [
        "date", "commands", "healed", "missing", "% complete", "gap records", "raw MB",
        "raw / JSON", "decoded MB", "total MB",
    ]  # fmt: skip
    parts = ["<h2>Per day</h2>", _table(headers, rows) if rows else _none("no commands")]
    causes = [
        [row["date"], row["cause"], row["records"], row["missing"]] for row in data["gaps_by_cause"]
    ]
    parts.append("<h3>Gap records by cause</h3>")
    parts.append(
        _table(["date", "cause", "records", "seqs missing"], causes, 2)
        if causes
        else _none("no gap records")
    )
    return "\n".join(parts)


def _commands(data: dict[str, Any], span: tuple[int, int]) -> str:
    per_minute = data["per_minute"]
    if not per_minute["minute"]:
        return "<h2>Commands</h2>" + _none("no commands in this range")
    svg = plots.commands_per_second(per_minute, data["gap_bands"], span)
    caption = (
        "Commands per second, averaged over each minute of ts_ms; shaded bands are gaps "
        "(those of one cause less than a minute apart drawn as one), coloured by cause."
    )
    return "<h2>Commands</h2>\n" + _figure("commands", svg, caption)


def _latency(data: dict[str, Any], span: tuple[int, int]) -> str:
    per_minute = data["per_minute"]
    if not per_minute["minute"]:
        return ""
    caption = (
        "p50 and p99 per minute. Top: publish_ts_us - ingest_ts_us, the vendor's processing. "
        "Bottom: recv_ts_us - publish_ts_us, the network plus the offset between the vendor's "
        "clock and ours (so it can be negative)."
    )
    return "<h2>Latency</h2>\n" + _figure("latency", plots.latency(per_minute, span), caption)


def _quarantine(data: dict[str, Any], span: tuple[int, int]) -> str:
    rows = data["quarantine"]
    if not rows:
        return "<h2>Quarantine</h2>" + _none("nothing quarantined")
    by_day = [[row["date"], row["kind"], row["frames"]] for row in data["quarantine_by_day"]]
    return (
        "<h2>Quarantine</h2>\n"
        + _figure(
            "quarantine", plots.quarantine(rows, span), "Frames quarantined per minute, by kind."
        )
        + _table(["date", "kind", "frames"], by_day, 2)
    )


def _endpoints(data: dict[str, Any], span: tuple[int, int]) -> str:
    endpoints = data["endpoints"]
    if endpoints is None:
        return "<h2>Endpoints</h2>" + _none("one endpoint recorded")
    wins = endpoints["wins"]
    if not endpoints["lag"]:
        return "<h2>Endpoints</h2>" + _none("no command was delivered by more than one endpoint")
    table = _table(
        ["endpoint", "delivered", "shared", "first"],
        [[row["endpoint"], row["delivered"], row["shared"], row["won"]] for row in wins],
    )
    return (
        "<h2>Endpoints</h2>\n"
        + _figure(
            "endpoint-lag",
            plots.endpoint_lag(endpoints["lag"], span),
            "How far behind the first delivery of each command each endpoint delivered it, "
            "p50 (solid) and p99 (dotted) per minute, over the commands more than one "
            "endpoint delivered.",
        )
        + _figure(
            "endpoint-wins",
            plots.endpoint_wins(wins),
            "Share of those commands each endpoint delivered first (tie: at the same microsecond).",
        )
        + table
    )


def _decoded(data: dict[str, Any]) -> str:
    dates = [day["date"] for day in data["days"]]
    decoded = {
        (table, day["date"]): rows
        for day in data["days"]
        for table, rows in day["decoded_rows"].items()
    }
    if not decoded:
        return "<h2>Decoded</h2>" + _none("not decoded")
    parts = ["<h2>Decoded</h2>", "<h3>Rows per table</h3>", _by_date(decoded, "table", dates)]
    commands = {day["date"]: day["commands"] for day in data["days"]}
    parts.append("<h3>Undecoded, by reason</h3>")
    undecoded = [
        [
            row["date"], row["reason"], row["rows"], row["commands"],
            100 * row["commands"] / commands[row["date"]] if commands.get(row["date"]) else None,
        ]
        for row in data["undecoded"]
    ]  # fmt: skip
    parts.append(
        _table(["date", "reason", "rows", "commands", "% of commands"], undecoded, 2)
        if undecoded
        else _none("every payload decoded")
    )
    parts.append("<h3>Node actions, by type</h3>")
    if data["actions"] and "undecoded" in data["actions"][0]:
        coverage = [
            [
                row["date"], row["kind"], row["actions"], row["with_facts"], row["undecoded"],
                100 * row["undecoded"] / row["actions"] if row["actions"] else None,
            ]
            for row in data["actions"]
        ]  # fmt: skip
        headers = ["date", "action type", "actions", "with facts", "undecoded", "% undecoded"]
        parts.append(_table(headers, coverage, 2))
        return "\n".join(parts)
    parts.append(
        '<p class="meta">These decoded files predate per-action coverage: run replica decode '
        "again for the undecoded share of each action type.</p>"
    )
    actions = {(row["kind"], row["date"]): row["actions"] for row in data["actions"]}
    parts.append(_by_date(actions, "action type", dates) if actions else _none("no actions"))
    return "\n".join(parts)


def _by_date(counts: dict[tuple[str, str], int], name: str, dates: list[str]) -> str:
    """``counts`` by (name, date) as a table of one row per name and one column per date,
    the largest first."""
    names = sorted({key for key, _ in counts}, key=lambda k: (-sum(
        counts.get((k, d), 0) for d in dates), k))  # fmt: skip
    rows = [[key, *(counts.get((key, d)) for d in dates)] for key in names]
    return _table([name, *dates], rows)
