"""``replica heal``: the click command over ``replica.maintenance.heal``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from replica.commands.common import READABLE_ARCHIVE, endpoint_option, given_endpoint


class SourcePath(click.Path):
    """A source that exists: a local path, or ``s3://bucket/prefix`` (at ``--endpoint-url``)."""

    def __init__(self) -> None:
        super().__init__(exists=True, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from replica.schemas.storage import is_remote
        from replica.schemas.storepath import store_root

        if isinstance(value, str) and is_remote(value):
            return store_root(value, given_endpoint(ctx) if ctx is not None else None)
        return super().convert(value, param, ctx)


@click.command()
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@click.option(
    "--from",
    "sources",
    multiple=True,
    required=True,
    type=SourcePath(),
    metavar="SOURCE",
    help="An archive of the same feed (a directory or s3://bucket/prefix), or (for an archive "
    "of node block heights) a node's replica_cmds files or directory. Repeat for more.",
)
@click.pass_context
def heal(ctx: click.Context, archive: Path, sources: tuple[Path, ...]) -> None:
    """Fill ARCHIVE's missing seqs from other sources of the same seq space.

    Seqs a source holds and ARCHIVE lacks are added with their original timestamps; seqs both
    hold are compared byte for byte, and a difference is quarantined (kind conflict) and listed
    on stderr, ARCHIVE keeping its own. Beside a running recorder only closed days are filled.
    Running it again changes nothing. Exit 1 on a conflict, 2 for a source of another seq
    space, 4 while compact, decode or import-node holds ARCHIVE.

    On s3://bucket/prefix a segment with seqs added inside is uploaded as two pieces before it
    is deleted (readers skip a segment inside a larger one); only closed days below ARCHIVE's
    last seq are filled, and running one heal, compact or decode per prefix at a time is up to
    you: a store has no lock.
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
