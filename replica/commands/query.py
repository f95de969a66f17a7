"""``replica sql``, ``duckdb`` and ``stats``: an archive read through DuckDB views."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from replica.commands.common import ARCHIVE_DIR
from replica.schemas.errors import UsageError


@click.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.argument("query", required=False)
@click.option("--views", is_flag=True, help="Print the CREATE VIEW statements instead.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="table cuts long cells; json is one object per line; parquet needs --output.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to FILE (replaced whole once the query succeeds).",
)
def sql(archive: Path, query: str | None, views: bool, fmt: str, output: Path | None) -> None:
    """Run QUERY with DuckDB over views of ARCHIVE: raw_cmds, gaps, quarantine, completeness
    and every decoded table, each with <stem>_utc timestamps beside the integer ones."""
    from replica.results import write_result
    from replica.sql import connect, view_statements

    if views:
        click.echo("\n".join(view_statements(archive.resolve())))
        return
    if query is None:
        raise UsageError("give a QUERY, or --views to see what can be queried")
    if output is not None and output.resolve().is_relative_to(archive.resolve()):
        raise UsageError(f"--output {output} is inside the archive; write it elsewhere")
    with connect(archive, query=query) as connection:
        write_result(connection, query, fmt, output)


@click.command(name="duckdb")
@click.argument("archive", type=ARCHIVE_DIR)
@click.argument("database", type=click.Path(dir_okay=False, path_type=Path))
def duckdb_command(archive: Path, database: Path) -> None:
    """Define ARCHIVE's views in the DuckDB DATABASE file (created, or its views replaced),
    for the duckdb shell or any DuckDB client."""
    from replica.sql import connect, view_names

    if database.resolve().is_relative_to(archive.resolve()):
        raise UsageError(f"{database} is inside the archive; write it elsewhere")
    with connect(archive, str(database)) as connection:
        names = view_names(connection)
    click.echo(f"{database}: views {', '.join(names)} over {archive.resolve()}")


@click.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def stats(archive: Path, as_json: bool) -> None:
    """Per UTC day: commands, gaps, completeness, bytes on disk, size against the feed's JSON
    frames, and rows per decoded table."""
    from replica.stats import archive_stats
    from replica.tables import text_table

    days = archive_stats(archive)
    if as_json:
        click.echo(json.dumps([day.to_json() for day in days], indent=2))
        return
    header = (
        "date", "commands", "healed", "missing", "complete", "gaps", "raw MB", "/ JSON",
        "decoded MB", "total MB", "decoded rows",
    )  # fmt: skip
    rows = [
        (
            day.date.isoformat(),
            f"{day.commands:,}",
            f"{day.healed:,}",
            f"{day.missing:,}",
            f"{math.floor(day.percent_complete * 100) / 100:.2f}%",
            str(day.gap_records),
            f"{day.raw_bytes / 1e6:.1f}",
            f"{day.compression:.3f}",
            f"{day.decoded_bytes / 1e6:.1f}",
            f"{day.total_bytes / 1e6:.1f}",
            ", ".join(f"{table} {n:,}" for table, n in sorted(day.decoded_rows.items())),
        )
        for day in days
    ]
    click.echo(text_table(header, rows, [False] + [True] * 9 + [False]), nl=False)
    node_header = ("date", "blocks with responses", "action type", "actions", "with facts",
                   "undecoded")  # fmt: skip
    node_rows = [
        (day.date.isoformat(), f"{share * 100:.1f}%", kind, f"{n:,}", f"{facts:,}",
         f"{undecoded:,}")
        for day in days
        if (share := day.responses_share) is not None
        for kind, (n, facts, undecoded) in sorted(day.action_coverage.items())
    ]  # fmt: skip
    if node_rows:
        click.echo("\nnode blocks: responses, and actions by type")
        click.echo(text_table(node_header, node_rows, [False, True, False, True, True, True]),
                   nl=False)  # fmt: skip
