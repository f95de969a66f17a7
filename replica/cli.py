"""The ``replica`` command: thin click wrappers over the Python API.

Only this module reads the environment, installs log handlers and signal handlers, and turns
errors into exit codes (see ``schemas.errors``). Each command imports the stage it runs when it
runs: a cron job running one command does not pay for loading the others.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from replica.options import Duration, Speed, UtcTime, api_key_from
from replica.progress import ProgressBar
from replica.recorder import __version__
from replica.replay.digest import CommandDigest
from replica.replay.frames import command_frame
from replica.replay.records import ReplayGap
from replica.replay.schedule import CLOCKS
from replica.schemas.errors import ReplicaError, UsageError
from replica.schemas.redact import redact

if TYPE_CHECKING:
    from replica.recorder.recorder import Recorder
    from replica.replay.server import DiskSyncServer
    from replica.replay.stream import Replay

log = logging.getLogger("replica")

ARCHIVE_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


class ReplicaGroup(click.Group):
    """Turns a bad argument or a ``ReplicaError`` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            click.echo(f"replica: error: {exc.format_message()}", err=True)
            ctx.exit(UsageError.exit_code)
        except ReplicaError as exc:
            click.echo(f"replica: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("websockets").setLevel(logging.WARNING)


@click.group(cls=ReplicaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="replica")
def cli() -> None:
    """Archive and replay Hyperliquid replica commands from the Disk-Sync feed."""
    _configure_logging()


@cli.command()
@click.argument("url")
@click.argument("archive", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--api-key-env",
    metavar="NAME",
    default="REPLICA_API_KEY",
    show_default=True,
    help="Environment variable holding the API key.",
)
@click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the API key (instead of the environment).",
)
@click.option(
    "--auth",
    type=click.Choice(["header", "query"]),
    default="header",
    show_default=True,
    help="Send the key as the x-api-key header, or as ?api_key= (which proxies may log).",
)
@click.option("--duration", type=Duration(), help="Stop cleanly after this long: 90s, 15m, 24h.")
@click.option("--until", type=UtcTime(), help="Stop cleanly at this time: 2026-11-22T00:00Z.")
@click.option(
    "--segment-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seal a segment at least this often.",
)
@click.option(
    "--segment-rows",
    type=click.IntRange(min=1),
    default=500_000,
    show_default=True,
    help="Seal a segment when it holds this many commands.",
)
@click.option(
    "--status-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Log a status line this often.",
)
@click.pass_context
def record(
    ctx: click.Context,
    url: str,
    archive: Path,
    api_key_env: str,
    api_key_file: Path | None,
    auth: str,
    duration,
    until,
    segment_seconds: float,
    segment_rows: int,
    status_seconds: float,
) -> None:
    """Tail the Disk-Sync feed at URL into ARCHIVE until stopped.

    SIGTERM or SIGINT, --duration and --until end the run cleanly (exit 0). Exit codes:
    1 unexpected error, 2 bad usage, 3 authentication refused, 4 archive held by another
    recorder. The last line on stdout is a JSON summary of the run.
    """
    from replica.recorder.recorder import Recorder, RecorderConfig

    env_explicit = ctx.get_parameter_source("api_key_env") is not ParameterSource.DEFAULT
    api_key = api_key_from(api_key_env, env_explicit, api_key_file)
    now = datetime.now(UTC)
    ends = [end for end in (duration and now + duration, until) if end is not None]
    if until is not None and until <= now:
        raise UsageError(f"--until {until.isoformat()} is already past")
    config = RecorderConfig(
        url=url,
        archive=archive,
        api_key=api_key,
        auth=auth,
        segment_seconds=segment_seconds,
        segment_rows=segment_rows,
        status_seconds=status_seconds,
        deadline=min(ends) if ends else None,
    )
    _tune_garbage_collector()
    ctx.exit(asyncio.run(_record(Recorder(config), api_key)))


def _tune_garbage_collector() -> None:
    """Recording and decoding allocate a few short-lived, acyclic objects per command;
    collecting the young generation every 700 allocations costs each about a tenth of its
    throughput. Process-wide, so the CLI decides it, not the library."""
    gc.freeze()  # what start-up imported is never garbage: keep full collections off it
    gc.set_threshold(10_000, 10, 10)


async def _record(recorder: Recorder, api_key: str | None) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, recorder.stop, signal.Signals(signum).name)
    try:
        summary = await recorder.run()
    except ReplicaError as exc:
        click.echo(f"replica: error: {exc}", err=True)
        summary = recorder.summary()
    except Exception:
        click.echo(redact(traceback.format_exc(), api_key), err=True, nl=False)
        summary = recorder.summary()
        summary.ended_by, summary.exit_code = "unexpected error", 1
    click.echo(summary.to_json())
    return summary.exit_code


@cli.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def gaps(archive: Path, as_json: bool) -> None:
    """List the seq ranges missing from ARCHIVE (inclusive), with their cause."""
    from replica.maintenance.verify import read_gaps

    records = read_gaps(archive)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in records]))
        return
    if not records:
        click.echo("no gaps")
        return
    click.echo(
        f"{'from_seq':>20} {'to_seq':>20} {'missing':>10}  {'cause':<9}  "
        "between (ts_ms, UTC)                              detected (UTC)"
    )
    for gap in records:
        between = f"{_utc_ms(gap.before_ts_ms)} and {_utc_ms(gap.after_ts_ms)}"
        click.echo(
            f"{gap.from_seq:>20} {gap.to_seq:>20} {gap.missing:>10}  {gap.cause:<9}  "
            f"{between:<48}  {_utc_ms(gap.detected_ts_us // 1000)}"
        )
    click.echo(f"{len(records)} gaps, {sum(g.missing for g in records)} seqs missing")


def _utc_ms(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "?"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


_RANGE_OPTIONS = (
    click.option("--from-seq", type=click.IntRange(min=0), help="First seq (inclusive)."),
    click.option("--to-seq", type=click.IntRange(min=0), help="Last seq (inclusive)."),
    click.option("--start", type=UtcTime(), help="Only commands with ts_ms from this time."),
    click.option("--end", type=UtcTime(), help="Only commands with ts_ms before this time."),
)


def _range_options(command):
    """The selection options of ``replay`` and ``verify --digest``, with the same meaning."""
    for option in reversed(_RANGE_OPTIONS):
        command = option(command)
    return command


@cli.command(name="verify")
@click.argument("archive", type=ARCHIVE_DIR)
@click.option(
    "--digest",
    is_flag=True,
    help="If the archive is sound, also print the SHA-256 that 'replica replay --digest' prints "
    "for the same range.",
)
@_range_options
@click.pass_context
def verify_command(ctx: click.Context, archive: Path, digest: bool, **selection) -> None:
    """Check that every file in ARCHIVE reads, seqs are sorted, disjoint and unique, and the
    gap records agree with the data. Prints each problem; exits 1 if there is any."""
    if not digest and any(value is not None for value in selection.values()):
        raise UsageError("--from-seq, --to-seq, --start and --end select what --digest covers")
    from replica.archive import open as open_archive
    from replica.maintenance.verify import verify

    report = verify(archive)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for note in report.notes:
        click.echo(f"note: {note}")
    span = f"seqs {report.first_seq}-{report.last_seq}" if report.rows else "no commands"
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(
        f"{report.segments} segments, {report.rows} commands, {span}, "
        f"{report.gap_records} gap records ({report.missing} seqs missing): {verdict}"
    )
    if digest and report.ok:
        click.echo(_digest_line(open_archive(archive).replay(**selection), warn=False))
    ctx.exit(0 if report.ok else 1)


@cli.command(name="replay")
@click.argument("archive", type=ARCHIVE_DIR)
@_range_options
@click.option(
    "--speed",
    type=Speed(),
    default="max",
    show_default=True,
    help="1 re-creates the original spacing, 10 compresses it tenfold, max never waits.",
)
@click.option(
    "--clock",
    type=click.Choice(list(CLOCKS)),
    default="ts_ms",
    show_default=True,
    help="The timestamp whose spacing the pace follows.",
)
@click.option(
    "--precise",
    is_flag=True,
    help="Spin through the last stretch before each command instead of sleeping: timing within "
    "tens of microseconds, at the cost of a busy core.",
)
@click.option("--fail-on-gap", is_flag=True, help="Stop with exit 1 at a gap in the range.")
@click.option(
    "--digest",
    is_flag=True,
    help="Print only the SHA-256 of the replayed commands (see README), not the frames.",
)
def replay_command(
    archive: Path,
    speed: float | None,
    clock: str,
    precise: bool,
    fail_on_gap: bool,
    digest: bool,
    **selection,
) -> None:
    """Write ARCHIVE's commands to stdout in seq order, one replica_cmd frame of the feed per
    line, as JSON text identical on every run.

    Seqs are inclusive at both ends; --start and --end select ts_ms from --start up to but not
    including --end. Each gap in the range is a warning on stderr (an error with
    --fail-on-gap). At a speed other than max, every frame is flushed when it is due.
    """
    from replica.archive import open as open_archive

    replay = open_archive(archive).replay(
        speed=speed, clock=clock, precise=precise, fail_on_gap=fail_on_gap, **selection
    )
    if digest:
        click.echo(_digest_line(replay, warn=True))
    else:
        _write_frames(replay, flush_each=speed is not None)


def _warn_gap(gap: ReplayGap) -> None:
    click.echo(
        f"replica: warning: seqs {gap.from_seq}-{gap.to_seq} are missing "
        f"({gap.missing} seqs, cause {gap.cause or 'unknown'})",
        err=True,
    )


def _digest_line(replay: Replay, *, warn: bool) -> str:
    digest = CommandDigest()
    for item in replay:
        if type(item) is ReplayGap:
            if warn:
                _warn_gap(item)
        else:
            digest.update(item.seq, item.raw)
    return f"sha256:{digest.hexdigest()} {digest.commands} commands"


def _write_frames(replay: Replay, *, flush_each: bool) -> None:
    out = sys.stdout
    try:
        try:
            for item in replay:
                if type(item) is ReplayGap:
                    out.flush()
                    _warn_gap(item)
                    continue
                out.write(command_frame(item) + "\n")
                if flush_each:
                    out.flush()
        finally:
            out.flush()
    except BrokenPipeError:
        # The reader left (``| head``): that ends the replay, and is no error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


@cli.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    required=True,
    help="Port to listen on; 0 picks a free one (the URL logged on stderr names it).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--api-key-env",
    metavar="NAME",
    help="Accept only clients presenting the key in this environment variable (x-api-key "
    "header or api_key query). Without this or --api-key-file, no key is checked.",
)
@click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the key clients must present (instead of the environment).",
)
def serve(
    archive: Path, port: int, host: str, api_key_env: str | None, api_key_file: Path | None
) -> None:
    """Serve ARCHIVE over the Disk-Sync WebSocket protocol until SIGINT or SIGTERM.

    Each connection is its own replay, chosen by its URL's query string: from_seq, to_seq,
    start, end (as for 'replica replay') and speed (a number or max; 1 if not given), e.g.
    ws://127.0.0.1:PORT/?from_seq=482910000&speed=10. A bad parameter is answered with HTTP
    400, a wrong key with 401. A client that stops reading for 5 s is closed with 1013.
    """
    from replica.archive import open as open_archive
    from replica.replay.server import DiskSyncServer, archive_frames

    api_key = None
    if api_key_env is not None or api_key_file is not None:
        api_key = api_key_from(api_key_env or "", api_key_env is not None, api_key_file)
    source = archive_frames(open_archive(archive).layout, default_speed=1.0)
    server = DiskSyncServer(source, api_key=api_key)
    asyncio.run(_serve(server, host, port, archive, checks_key=api_key is not None))


async def _serve(
    server: DiskSyncServer, host: str, port: int, archive: Path, checks_key: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        port = await server.start(host, port)
    except OSError as exc:
        raise ReplicaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "serving %s at ws://%s:%d (%s) until SIGINT or SIGTERM",
        archive,
        shown,
        port,
        "clients must present the API key" if checks_key else "no API key checked",
    )
    await stop.wait()
    log.info("stopping: closing connections")
    await server.close()


@cli.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Decode this many segments at once, each in its own process.",
)
@click.option(
    "--quiet", is_flag=True, help="Print only errors: no progress bar, no summary (for cron)."
)
@click.option(
    "--schema",
    "descriptor_set",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Parse protobuf payloads with a message of this FileDescriptorSet instead of v1.",
)
@click.option("--message", metavar="NAME", help="The --schema message, fully qualified.")
@click.pass_context
def decode(
    ctx: click.Context,
    archive: Path,
    jobs: int,
    quiet: bool,
    descriptor_set: Path | None,
    message: str | None,
) -> None:
    """Decode ARCHIVE's raw payloads into typed tables under ARCHIVE/decoded/.

    Only segments that are new, or were decoded by another decoder version or schema, are
    decoded; running it again changes nothing. A progress bar on a terminal, then a summary of
    rows per table. Exits 1 if a segment could not be decoded (the others are decoded).
    """
    from replica.decoder.archive import MessageSpec, decode_archive

    if (descriptor_set is None) != (message is None):
        raise UsageError("--schema and --message go together")
    progress = ProgressBar(enabled=not quiet and sys.stderr.isatty(), label="decoding")
    _tune_garbage_collector()
    summary = decode_archive(
        archive,
        MessageSpec(descriptor_set, message),
        jobs=jobs,
        on_start=progress.start,
        on_segment=lambda _segment: progress.advance(),
    )
    progress.finish()
    for failure in summary.failed:
        click.echo(f"replica: error: {failure}", err=True)
    if not quiet:
        click.echo(
            f"decoded {summary.decoded} of {summary.segments} segments "
            f"({summary.segments - summary.decoded - len(summary.failed)} already up to date, "
            f"{len(summary.failed)} failed)"
        )
        for table, rows in sorted(summary.rows.items()):
            click.echo(f"  {table:<14} {rows:>12,} rows")
    ctx.exit(1 if summary.failed else 0)


@cli.command()
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


@cli.command(name="duckdb")
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


@cli.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def stats(archive: Path, as_json: bool) -> None:
    """Per UTC day: commands, gaps, completeness, bytes on disk, size against the feed's JSON
    frames, and rows per decoded table."""
    from replica.stats import archive_stats

    days = archive_stats(archive)
    if as_json:
        click.echo(json.dumps([day.to_json() for day in days], indent=2))
        return
    click.echo(
        f"{'date':<12}{'commands':>12}{'missing':>9}{'complete':>10}{'gaps':>6}"
        f"{'raw MB':>9}{'/ JSON':>8}{'decoded MB':>12}{'total MB':>10}"
    )
    for day in days:
        click.echo(
            f"{day.date.isoformat():<12}{day.commands:>12,}{day.missing:>9,}"
            f"{math.floor(day.percent_complete * 100) / 100:>9.2f}%{day.gap_records:>6}"
            f"{day.raw_bytes / 1e6:>9.1f}"
            f"{day.compression:>8.3f}{day.decoded_bytes / 1e6:>12.1f}{day.total_bytes / 1e6:>10.1f}"
        )
        if day.decoded_rows:
            rows = ", ".join(f"{table} {n:,}" for table, n in sorted(day.decoded_rows.items()))
            click.echo(f"{'':<12}decoded rows: {rows}")


@cli.command(name="import-node")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("archive", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def import_node_command(ctx: click.Context, paths: tuple[Path, ...], archive: Path) -> None:
    """Import the replica_cmds files a Hyperliquid node writes into ARCHIVE (created if missing).

    Each PATH is a file named by its block height (plain, or .lz4) or a directory searched for
    them. Only blocks the archive lacks are written, so running it again writes nothing; a last
    line the node has not finished is skipped until it has. Holes between segments are recorded
    as gaps. A progress bar on a terminal, then a summary. Exits 1 if a file has a bad line (the
    others are imported), 4 if a recorder, replica compact or replica decode holds ARCHIVE.
    """
    from replica.maintenance.node_import import import_node

    progress = ProgressBar(enabled=sys.stderr.isatty(), label="importing")

    def on_progress(done: int, total: int) -> None:
        if done == 0:
            progress.start(total)
        else:
            progress.advance()

    try:
        summary = import_node(paths, archive, on_progress)
    finally:
        progress.finish()
    for warning in summary.warnings:
        click.echo(f"replica: warning: {warning}", err=True)
    for failure in summary.failed:
        click.echo(f"replica: error: {failure}", err=True)
    unchanged = ": nothing written" if not summary.segments and not summary.gaps else ""
    click.echo(
        f"{summary.files} files, {summary.imported} blocks imported, {summary.present} already "
        f"present, {summary.segments} segments written, {summary.gaps} gaps recorded, "
        f"{summary.truncated} unfinished last lines skipped{unchanged}"
    )
    ctx.exit(1 if summary.failed else 0)


@cli.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.option(
    "--date",
    "day",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Compact only this UTC day; refused (exit 2) unless it is closed.",
)
@click.option("--quiet", is_flag=True, help="Print only errors (for cron).")
def compact(archive: Path, day: datetime | None, quiet: bool) -> None:
    """Merge the small raw segments of each closed UTC day of ARCHIVE into few large ones.

    A day is closed 10 minutes after it ends, once no spool file holds its commands. Decoded
    tables are merged along, or dropped for 'replica decode' to redo. Readers never see half a
    day; running it again changes nothing. Exit 4 while 'replica decode' runs on ARCHIVE.
    """
    from replica.maintenance.compact import compact as compact_archive

    summary = compact_archive(archive, None if day is None else day.date())
    if not quiet:
        for line in summary.lines():
            click.echo(line)


@cli.command()
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default="replica-demo"
)
def demo(directory: Path) -> None:
    """Record the bundled fixture feed from a local server into DIRECTORY: no key, no network."""
    from replica.demo import run_demo

    asyncio.run(run_demo(directory, click.echo))


def main() -> None:
    cli(prog_name="replica")


from replica.report.command import report  # noqa: E402  (the report command lives with the report)

cli.add_command(report)
