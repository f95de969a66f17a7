"""``replica verify``, ``gaps``, ``decode``, ``compact`` and ``import-node``: checking an
archive, and the work done on it beside or after the recorder."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from replica.commands.common import (
    NEW_ARCHIVE_DIR,
    READABLE_ARCHIVE,
    Interrupted,
    date_option,
    digest_line,
    endpoint_option,
    range_options,
    replay_digest,
    since_option,
    tune_garbage_collector,
    warn_nothing_selected,
)
from replica.progress import progress_bar
from replica.schemas.errors import UsageError

cluster_option = click.option(
    "--cluster",
    metavar="tcp://HOST:PORT",
    help="Run the work as tasks on this Dask scheduler's workers, which must see ARCHIVE at the "
    "same path, or reach its s3:// store with credentials of their own (needs replica[cluster]).",
)


@click.command()
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def gaps(archive: Path, as_json: bool) -> None:
    """List the seq ranges missing from ARCHIVE (inclusive), with their cause."""
    from replica.maintenance.verify import read_gaps
    from replica.tables import text_table

    records = read_gaps(archive)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in records]))
        return
    if not records:
        click.echo("no gaps")
        return
    header = ("from_seq", "to_seq", "missing", "cause", "between (ts_ms, UTC)", "detected (UTC)")
    rows = [
        (
            str(gap.from_seq),
            str(gap.to_seq),
            str(gap.missing),
            gap.cause,
            f"{_utc_ms(gap.before_ts_ms)} and {_utc_ms(gap.after_ts_ms)}",
            _utc_ms(gap.detected_ts_us // 1000),
        )
        for gap in records
    ]
    click.echo(text_table(header, rows, (True, True, True, False, False, False)), nl=False)
    click.echo(f"{len(records)} gaps, {sum(g.missing for g in records)} seqs missing")


def _utc_ms(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "?"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@click.command(name="verify")
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@click.option(
    "--digest",
    is_flag=True,
    help="If the archive is sound, also print the SHA-256 that 'replica replay --digest' prints "
    "for the same range.",
)
@date_option("Check only this UTC day's files, and its seams with the days around it.")
@since_option("Check only the UTC days from this one on, and their seam with the day before.")
@range_options
@cluster_option
@click.pass_context
def verify_command(
    ctx: click.Context,
    /,
    archive: Path,
    digest: bool,
    day: datetime | None,
    since: datetime | None,
    cluster: str | None,
    **selection: Any,
) -> None:
    """Check that every file in ARCHIVE reads, seqs are sorted, disjoint and unique, and the
    gap records agree with the data. Prints each problem; exits 1 if there is any."""
    if not digest and any(value is not None for value in selection.values()):
        raise UsageError("--from-seq, --to-seq, --start and --end select what --digest covers")
    from replica.archive import open as open_archive
    from replica.maintenance.days import selected_days
    from replica.maintenance.verify import verify
    from replica.schemas.archive import ArchiveLayout

    # Built first, so that a bad range is refused before the archive is read.
    replay = open_archive(archive).replay(**selection) if digest else None
    days = selected_days(ArchiveLayout(archive), day and day.date(), since and since.date())
    report = verify(archive, days, cluster)
    for problem in report.problems:  # one line each, whatever pyarrow's message spans
        click.echo(f"problem: {' '.join(problem.split())}")
    for note in report.notes:
        click.echo(f"note: {note}")
    span = f"seqs {report.first_seq}-{report.last_seq}" if report.rows else "no commands"
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(
        f"{report.segments} segments, {report.rows} commands, {span}, "
        f"{report.gap_records} gap records ({report.missing} seqs missing): {verdict}"
    )
    if replay is not None and report.ok:
        digested = replay_digest(replay, warn=False)
        if not digested.commands:
            warn_nothing_selected(archive, selection)
        click.echo(digest_line(digested))
    ctx.exit(0 if report.ok else 1)


@click.command()
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Decode this many segments at once: one here, one in each of N-1 more processes.",
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
@cluster_option
@click.pass_context
def decode(
    ctx: click.Context,
    archive: Path,
    jobs: int,
    quiet: bool,
    descriptor_set: Path | None,
    message: str | None,
    cluster: str | None,
) -> None:
    """Decode ARCHIVE's raw payloads into typed tables under ARCHIVE/decoded/.

    Only segments that are new, or were decoded by another decoder version or schema, are
    decoded; running it again changes nothing. A progress bar on a terminal, then a summary of
    rows per table. Exits 1 if a segment could not be decoded (the others are decoded), 130
    on SIGINT (Ctrl-C), after which a second run goes on where it stopped. On
    s3://bucket/prefix each process or worker uploads a segment's tables before its marker.
    """
    from replica.decoder.archive import MessageSpec, decode_archive, pending_segments
    from replica.decoder.core import Decoder

    if (descriptor_set is None) != (message is None):
        raise UsageError("--schema and --message go together")
    if cluster is not None and jobs > 1:
        raise UsageError("--jobs is for the local processes; with --cluster the workers decide")
    tune_garbage_collector()
    spec = MessageSpec(descriptor_set, message)
    todo = [0]  # segments to decode, as the run found them

    with progress_bar("decoding", quiet=quiet) as on_progress:

        def report(done: int, total: int) -> None:
            todo[0] = total
            on_progress(done, total)

        try:
            summary = decode_archive(archive, spec, jobs=jobs, on_progress=report, cluster=cluster)
        except KeyboardInterrupt:
            # Counted again on disk: a segment finishes before the progress call that counts it.
            left = len(pending_segments(archive, Decoder(spec.load()).version)[1])
            raise Interrupted(
                f"after decoding {max(todo[0] - left, 0)} of {todo[0]} segments: those are kept, "
                f"and 'replica decode {archive}' again decodes the other {left}"
            ) from None
    for failure in summary.failed:
        click.echo(f"replica: error: {' '.join(failure.split())}", err=True)
    if not quiet:
        click.echo(
            f"decoded {summary.decoded} of {summary.segments} segments "
            f"({summary.segments - summary.decoded - len(summary.failed)} already up to date, "
            f"{len(summary.failed)} failed)"
        )
        for table, rows in sorted(summary.rows.items()):
            click.echo(f"  {table:<14} {rows:>12,} rows")
    ctx.exit(1 if summary.failed else 0)


@click.command(name="import-node")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("archive", type=NEW_ARCHIVE_DIR)
@endpoint_option
@cluster_option
@click.pass_context
def import_node_command(
    ctx: click.Context, paths: tuple[Path, ...], archive: Path, cluster: str | None
) -> None:
    """Import the replica_cmds files a Hyperliquid node writes into ARCHIVE (created if missing).

    Each PATH is a file named by its block height (plain, or .lz4) or a directory searched for
    them. Only blocks the archive lacks are written, so running it again writes nothing; a last
    line the node has not finished is skipped until it has. Holes between segments are recorded
    as gaps. A progress bar on a terminal, then a summary. Exits 1 if a file has a bad line (the
    others are imported), 4 if a recorder, replica compact or replica decode holds ARCHIVE.

    On s3://bucket/prefix each new segment is built locally and uploaded to its final key, and
    running one import per prefix at a time (no compact or decode meanwhile) is up to you: a
    store has no lock. With --cluster the workers build and upload the segments.
    """
    from replica.maintenance.node_import import import_node

    with progress_bar("importing") as on_progress:
        summary = import_node(paths, archive, on_progress, cluster)
    for warning in summary.warnings:
        click.echo(f"replica: warning: {warning}", err=True)
    for failure in summary.failed:
        click.echo(f"replica: error: {' '.join(failure.split())}", err=True)
    unchanged = ": nothing written" if not summary.segments and not summary.gaps else ""
    click.echo(
        f"{summary.files} files, {summary.imported} blocks imported, {summary.present} already "
        f"present, {summary.segments} segments written, {summary.gaps} gaps recorded, "
        f"{summary.truncated} unfinished last lines skipped{unchanged}"
    )
    ctx.exit(1 if summary.failed else 0)


@click.command()
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@date_option("Compact only this UTC day; refused (exit 2) unless it is closed.")
@click.option("--quiet", is_flag=True, help="Print only errors (for cron).")
def compact(archive: Path, day: datetime | None, quiet: bool) -> None:
    """Merge the small raw segments of each closed UTC day of ARCHIVE into few large ones.

    A day is closed 10 minutes after it ends, once no spool file holds its commands. Decoded
    tables are merged along, or dropped for 'replica decode' to redo. Readers never see half a
    day; running it again changes nothing. Exit 4 while 'replica decode' runs on ARCHIVE.

    On s3://bucket/prefix each merged segment is uploaded before its inputs are deleted
    (readers skip a segment inside a larger one), decoded tables are dropped, and running one
    compact or decode per prefix at a time is up to you: a store has no lock.
    """
    from replica.maintenance.compact import compact as compact_archive

    summary = compact_archive(archive, None if day is None else day.date())
    if not quiet:
        for line in summary.lines():
            click.echo(line)
