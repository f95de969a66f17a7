"""``replica sync``: an archive copied to or from an object store (``s3://bucket/prefix``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from replica.commands.common import endpoint_option, given_endpoint


class ArchiveOrUrl(click.ParamType[Path | str]):
    """An ARCHIVE that may be on an object store: a URL is kept as given (its store is reached
    when the command runs), a local path is checked as ``READABLE_ARCHIVE`` checks it."""

    name = "archive"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path | str:
        from replica.schemas.archive import ArchiveLayout
        from replica.schemas.storage import is_remote

        return str(value) if is_remote(value) else ArchiveLayout.open(Path(value)).root


ARCHIVE_OR_URL = ArchiveOrUrl()


@click.command()
@click.argument("archive")
@click.argument("dest")
@endpoint_option
@click.option(
    "--delete",
    is_flag=True,
    help="Then remove the sealed files DEST has and ARCHIVE no longer does (those a compaction "
    "replaced).",
)
@click.pass_context
def sync(ctx: click.Context, archive: str, dest: str, delete: bool) -> None:
    """Copy ARCHIVE's sealed files to DEST: a local archive to s3://bucket/prefix, or back.

    Files DEST already holds at the same size and SHA-256 are skipped, so a second run copies
    nothing; the spool, locks and staging directories are never copied."""
    from replica.maintenance.sync import sync as run_sync

    click.echo(run_sync(archive, dest, given_endpoint(ctx), delete).line())
