"""What several commands share: the archive argument, the seq/time range options, the garbage
collector tuning of the long runs, and the replay digest line."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from replica.options import UtcTime
from replica.replay.digest import CommandDigest
from replica.replay.records import ReplayGap

if TYPE_CHECKING:
    from replica.replay.stream import Replay

Command = TypeVar("Command", bound=Callable[..., Any])


class ArchiveDir(click.ParamType):
    """The ARCHIVE argument of every command that reads an archive: one that exists, by the
    rule of ``ArchiveLayout.open``, so that a typo or an empty directory is refused (exit 2)
    before anything is read, locked or created in it."""

    name = "archive"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        from replica.schemas.archive import ArchiveLayout

        return ArchiveLayout.open(Path(value)).root


ARCHIVE_DIR = ArchiveDir()

_RANGE_OPTIONS = (
    click.option("--from-seq", type=click.IntRange(min=0), help="First seq (inclusive)."),
    click.option("--to-seq", type=click.IntRange(min=0), help="Last seq (inclusive)."),
    click.option("--start", type=UtcTime(), help="Only commands with ts_ms from this time."),
    click.option("--end", type=UtcTime(), help="Only commands with ts_ms before this time."),
)


def range_options(command: Command) -> Command:
    """The selection options of ``replay`` and ``verify --digest``, with the same meaning."""
    for option in reversed(_RANGE_OPTIONS):
        command = option(command)
    return command


def tune_garbage_collector() -> None:
    """Recording and decoding allocate a few short-lived, acyclic objects per command;
    collecting the young generation every 700 allocations costs each about a tenth of its
    throughput. Process-wide, so the CLI decides it, not the library."""
    gc.freeze()  # what start-up imported is never garbage: keep full collections off it
    gc.set_threshold(10_000, 10, 10)


def warn_gap(gap: ReplayGap) -> None:
    click.echo(
        f"replica: warning: seqs {gap.from_seq}-{gap.to_seq} are missing "
        f"({gap.missing} seqs, cause {gap.cause or 'unknown'})",
        err=True,
    )


def digest_line(replay: Replay, *, warn: bool) -> str:
    digest = CommandDigest()
    for item in replay:
        if type(item) is ReplayGap:
            if warn:
                warn_gap(item)
        else:
            digest.update(item.seq, item.raw)
    return f"sha256:{digest.hexdigest()} {digest.commands} commands"
