"""The ``replica report`` command: a thin click wrapper over ``replica.report.write_report``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from replica.commands.common import READABLE_ARCHIVE, date_option, endpoint_option
from replica.options import UtcTime
from replica.schemas.errors import UsageError


@click.command(name="report")
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@date_option("Report on this UTC day.")
@click.option("--start", type=UtcTime(), help="Report on commands with ts_ms from this time.")
@click.option("--end", type=UtcTime(), help="Report on commands with ts_ms before this time.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="The HTML file to write (replaced whole), a local file even for an s3:// ARCHIVE.",
)
def report(
    archive: Path,
    day: datetime | None,
    start: datetime | None,
    end: datetime | None,
    output: str,
) -> None:
    """Write ARCHIVE's health as one self-contained HTML page of plots: commands per second with
    the gaps, latency, quarantine, endpoints, and per day completeness, bytes and decoded rows.
    The whole archive unless --date or --start/--end narrow it. ARCHIVE may be s3://bucket/prefix;
    the page is written locally. Needs 'replica[report]'."""
    from replica.report.write import WHOLE_ARCHIVE, Range, write_report
    from replica.schemas.storage import is_remote

    if is_remote(str(output)):
        raise UsageError(f"-o {output}: the report is written to a local file; give a local path")
    if day is not None and (start is not None or end is not None):
        raise UsageError("give --date or --start/--end, not both")
    if day is not None:
        start = day.replace(tzinfo=UTC)
        end = start + timedelta(days=1)
    if start is not None and end is not None and start >= end:
        raise UsageError(f"--start {start.isoformat()} is not before --end {end.isoformat()}")
    asked = Range(
        WHOLE_ARCHIVE.start_ms if start is None else _ms(start),
        WHOLE_ARCHIVE.end_ms if end is None else _ms(end),
    )
    data = write_report(archive, Path(output), asked)
    commands = sum(row["commands"] for row in data["days"])
    click.echo(f"{output}: {commands:,} commands over {len(data['days'])} day(s)")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
