"""``replica sql``, ``duckdb`` and ``stats``: an archive read through DuckDB views."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import IO

import click

from replica.commands.common import (
    READABLE_ARCHIVE,
    date_option,
    endpoint_option,
    given_endpoint,
    since_option,
)
from replica.commands.storage import ARCHIVE_OR_URL
from replica.schemas.errors import UsageError


class _SqlCommand(click.Command):
    """``replica sql``, whose QUERY may start with ``-``: a file such as check.sql that opens
    with a ``-- comment`` is passed as ``"$(cat check.sql)"``, which click would read as an
    unknown option. An argument that starts with ``-`` and holds whitespace is no option (no
    option name holds any), so it is moved behind ``--``, where click takes it as QUERY."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            options = {name for param in self.params for name in param.opts}
            valued = {
                name
                for param in self.params
                if isinstance(param, click.Option) and not param.is_flag
                for name in param.opts
            }
            kept: list[str] = []
            queries: list[str] = []
            for previous, arg in zip([None, *args], args, strict=False):
                is_query = previous not in valued and _is_query_text(arg, options)
                (queries if is_query else kept).append(arg)
            if queries:
                args = [*kept, "--", *queries]
        return super().parse_args(ctx, args)


def _is_query_text(arg: str, options: set[str]) -> bool:
    holds_space = any(character.isspace() for character in arg)
    return arg.startswith("-") and holds_space and arg.split("=", 1)[0] not in options


@click.command(cls=_SqlCommand)
@click.argument("archive", type=ARCHIVE_OR_URL)
@click.argument("query", required=False)
@click.option(
    "-f",
    "--file",
    "query_file",
    type=click.File("r", encoding="utf-8"),
    help="Read the query from FILE (- for stdin) instead of QUERY; so does QUERY -.",
)
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
@endpoint_option
@click.pass_context
def sql(
    ctx: click.Context,
    archive: Path | str,
    query: str | None,
    query_file: IO[str] | None,
    views: bool,
    fmt: str,
    output: Path | None,
) -> None:
    """Run QUERY with DuckDB over views of ARCHIVE: raw_cmds, gaps, quarantine, completeness
    and every decoded table, each with <stem>_utc timestamps beside the integer ones.
    ARCHIVE may be s3://bucket/prefix (see replica sync).

    QUERY may be given as text (it may start with a -- comment), as - to read it from stdin,
    or with -f FILE. A query that would write inside ARCHIVE (COPY ... TO, EXPORT DATABASE,
    ATTACH) is refused, as --output there is."""
    from replica.query_targets import writes_inside, writes_to_store
    from replica.results import write_result
    from replica.sql import connect, view_statements
    from replica.sql_storage import open_tree

    endpoint_url = given_endpoint(ctx)
    if views:
        click.echo("\n".join(view_statements(open_tree(archive, endpoint_url))))
        return
    query = _query_text(query, query_file)
    if isinstance(archive, Path):
        if output is not None:
            _check_written_outside(output, archive, "--output ")
        target = writes_inside(query, archive)
    else:
        if output is not None and not output.resolve().parent.is_dir():
            raise UsageError(f"--output {output}: directory {output.parent} does not exist")
        target = writes_to_store(query)
        if target is not None:
            raise UsageError(f"the query writes {target!r}, to an object store; write it locally")
    if target is not None:
        raise UsageError(f"the query writes {target!r}, inside the archive; write it elsewhere")
    with connect(archive, query=query, endpoint_url=endpoint_url) as connection:
        write_result(connection, query, fmt, output)


def _check_written_outside(path: Path, archive: Path, option: str = "") -> None:
    """A file a command writes: never inside the archive, and in a directory that exists (named
    as the user gave it, not as the temporary file beside it that would fail)."""
    if path.resolve().is_relative_to(archive.resolve()):
        raise UsageError(f"{option}{path} is inside the archive; write it elsewhere")
    if not path.resolve().parent.is_dir():
        raise UsageError(f"{option}{path}: directory {path.parent} does not exist")


def _query_text(query: str | None, query_file: IO[str] | None) -> str:
    if query is not None and query_file is not None:
        raise UsageError("give the query as QUERY or with -f FILE, not both")
    if query_file is not None:
        text = query_file.read()
    elif query == "-":
        text = sys.stdin.read()
    elif query is None:
        raise UsageError("give a QUERY (or -f FILE, or - for stdin), or --views to see views")
    else:
        text = query
    if not text.strip():
        raise UsageError("the query is empty")
    return text


@click.command(name="duckdb")
@click.argument("archive", type=READABLE_ARCHIVE)
@click.argument("database", type=click.Path(dir_okay=False, path_type=Path))
@endpoint_option
def duckdb_command(archive: Path, database: Path) -> None:
    """Define ARCHIVE's views in the DuckDB DATABASE file (created, or its views replaced),
    for the duckdb shell or any DuckDB client.

    ARCHIVE may be s3://bucket/prefix: the views then read s3:// URLs, which a client reads
    through DuckDB's httpfs extension and an S3 secret (see README), or in Python through
    replica.connect."""
    from replica.schemas.storepath import StorePath
    from replica.sql import connect, view_names

    on_store = isinstance(archive, StorePath)
    if on_store:
        if not database.resolve().parent.is_dir():
            raise UsageError(f"{database}: directory {database.parent} does not exist")
    else:
        _check_written_outside(database, archive)
    with connect(archive, str(database)) as connection:
        names = view_names(connection)
    click.echo(f"{database}: views {', '.join(names)} over {archive.resolve()}")
    if on_store:
        click.echo(
            "the views read s3:// URLs: a duckdb shell needs 'LOAD httpfs' and an S3 secret "
            "(CREATE SECRET (TYPE s3, PROVIDER credential_chain, ENDPOINT ..., URL_STYLE "
            "'path')) to read them"
        )


@click.command()
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@date_option("Only this UTC day, read from its own files.")
@since_option("Only the UTC days from this one on, read from their own files.")
def stats(archive: Path, as_json: bool, day: datetime | None, since: datetime | None) -> None:
    """Per UTC day: commands, gaps, completeness, bytes on disk, size against the feed's JSON
    frames, and rows per decoded table."""
    from replica.maintenance.days import selected_days
    from replica.schemas.archive import ArchiveLayout
    from replica.stats import archive_stats
    from replica.tables import text_table

    chosen = selected_days(ArchiveLayout(archive), day and day.date(), since and since.date())
    days = archive_stats(archive, chosen)
    if as_json:
        click.echo(json.dumps([day.to_json() for day in days], indent=2))
        return
    if not days:
        click.echo(f"{archive}: no commands yet")
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
