"""``replica heal``: the click command over ``replica.maintenance.heal``."""

from __future__ import annotations

from pathlib import Path

import click

from replica.commands.common import ARCHIVE_DIR


@click.command()
@click.argument("archive", type=ARCHIVE_DIR)
@click.option(
    "--from",
    "sources",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="SOURCE",
    help="An archive of the same feed, or (for an archive of node block heights) a node's "
    "replica_cmds files or directory. Repeat for more.",
)
@click.pass_context
def heal(ctx: click.Context, archive: Path, sources: tuple[Path, ...]) -> None:
    """Fill ARCHIVE's missing seqs from other sources of the same seq space.

    Seqs a source holds and ARCHIVE lacks are added with their original timestamps; seqs both
    hold are compared byte for byte, and a difference is quarantined (kind conflict) and listed
    on stderr, ARCHIVE keeping its own. Beside a running recorder only closed days are filled.
    Running it again changes nothing. Exit 1 on a conflict, 2 for a source of another seq
    space, 4 while compact, decode or import-node holds ARCHIVE.
    """
    from replica.maintenance.heal import heal as heal_archive

    summary = heal_archive(archive, sources)
    for day in summary.finished:
        click.echo(f"finished the interrupted swap of {day}")
    for warning in summary.warnings:
        click.echo(f"replica: warning: {warning}", err=True)
    for conflict in summary.conflicts:
        click.echo(f"replica: conflict: {conflict}", err=True)
    changed = summary.segments_written + summary.segments_rewritten + summary.gaps
    click.echo(
        f"{summary.added} seqs added from {len(summary.sources)} sources "
        f"({summary.segments_written} segments written, {summary.segments_rewritten} "
        f"rewritten), {summary.compared} compared, {len(summary.conflicts)} conflicts, "
        f"{summary.gaps} gaps recorded{'' if changed else ': nothing written'}"
    )
    ctx.exit(1 if summary.conflicts else 0)
