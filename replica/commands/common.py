"""What several commands share: the archive argument, the seq/time range options, the garbage
collector tuning of the long runs, the replay digest line, what an empty selection and an
interrupted run say."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from replica.options import UtcTime
from replica.replay.digest import CommandDigest
from replica.replay.records import ReplayGap
from replica.schemas.errors import ReplicaError

if TYPE_CHECKING:
    from replica.replay.stream import Replay
    from replica.schemas.archive import Segment

Command = TypeVar("Command", bound=Callable[..., Any])


class ArchiveDir(click.ParamType[Path]):
    """The ARCHIVE argument of every command that reads an archive: one that exists, by the
    rule of ``ArchiveLayout.open``, so that a typo or an empty directory is refused (exit 2)
    before anything is read, locked or created in it. It may be ``s3://bucket/prefix`` (its
    store at ``--endpoint-url``, see ``endpoint_option``): the readers, and the commands that
    write, which publish by the store's rule."""

    name = "archive"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        from replica.schemas.archive import ArchiveLayout
        from replica.schemas.storage import is_remote

        if not is_remote(value):
            return ArchiveLayout.open(Path(value)).root
        endpoint_url = ctx.meta.get(_ENDPOINT_KEY) if ctx is not None else None
        return ArchiveLayout.open(value, endpoint_url).root


class NewArchiveDir(click.Path):
    """The ARCHIVE of a command that may create it (``import-node``): a local directory, or
    ``s3://bucket/prefix`` (its store at ``--endpoint-url``), which need not hold anything yet."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from replica.schemas.storage import is_remote
        from replica.schemas.storepath import store_root

        if is_remote(value):
            return store_root(value, ctx.meta.get(_ENDPOINT_KEY) if ctx is not None else None)
        return super().convert(value, param, ctx)


READABLE_ARCHIVE = ArchiveDir()
NEW_ARCHIVE_DIR = NewArchiveDir()
_ENDPOINT_KEY = "replica.endpoint_url"


def _keep_endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta[_ENDPOINT_KEY] = value


def given_endpoint(ctx: click.Context) -> str | None:
    """The ``--endpoint-url`` given, for a command that reaches a store itself (``record``'s
    uploads, ``sync``, ``sql``) rather than through its ARCHIVE argument."""
    endpoint: str | None = ctx.meta.get(_ENDPOINT_KEY)
    return endpoint


# Eager, so that it is known when ARCHIVE is converted, wherever it stands on the line.
endpoint_option = click.option(
    "--endpoint-url",
    metavar="URL",
    is_eager=True,
    expose_value=False,
    callback=_keep_endpoint,
    help="For an s3:// URL: the S3-compatible store's endpoint (default: $AWS_ENDPOINT_URL, "
    "else AWS S3). Credentials come from the AWS chain: environment, profile or instance role.",
)

_RANGE_OPTIONS = (
    click.option("--from-seq", type=click.IntRange(min=0), help="First seq (inclusive)."),
    click.option("--to-seq", type=click.IntRange(min=0), help="Last seq (inclusive)."),
    click.option(
        "--start",
        type=UtcTime(),
        help="Only commands with ts_ms from this time (a date alone is its midnight UTC).",
    ),
    click.option("--end", type=UtcTime(), help="Only commands with ts_ms before this time."),
)


def range_options(command: Command) -> Command:
    """The selection options of ``replay`` and ``verify --digest``, with the same meaning."""
    for option in reversed(_RANGE_OPTIONS):
        command = option(command)
    return command


def date_option(help: str) -> Callable[[Command], Command]:
    """``--date YYYY-MM-DD``, a UTC day, passed as ``day``."""
    return click.option(
        "--date", "day", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", help=help
    )


def since_option(help: str) -> Callable[[Command], Command]:
    """``--since YYYY-MM-DD``, the first of the UTC days wanted."""
    return click.option(
        "--since", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD", help=help
    )


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


class Interrupted(ReplicaError):
    """SIGINT (Ctrl-C) ended a command; 130 is the shell's status for it (128 + SIGINT), which
    tells a script the run was stopped rather than failed."""

    exit_code = 130


def replay_digest(replay: Replay, *, warn: bool) -> CommandDigest:
    digest = CommandDigest()
    for item in replay:
        if type(item) is ReplayGap:
            if warn:
                warn_gap(item)
        else:
            digest.update(item.seq, item.raw)
    return digest


def digest_line(digest: CommandDigest) -> str:
    return f"sha256:{digest.hexdigest()} {digest.commands} commands"


def warn_nothing_selected(archive: Path, selection: dict[str, Any]) -> None:
    """An empty selection is no error (a window may be quiet), but never a silent one: a
    --start after the archive's end or a mistyped seq would look like a quiet window."""
    chosen = " ".join(
        f"--{name.replace('_', '-')} {value.isoformat() if hasattr(value, 'isoformat') else value}"
        for name, value in selection.items()
        if value is not None
    )
    from replica.schemas.archive import ArchiveLayout

    segments = ArchiveLayout(archive).segments()
    holds = (
        f"it holds seqs {segments[0].first_seq}-{segments[-1].last_seq} in the UTC hours "
        f"{_hour_of(segments[0])} to {_hour_of(segments[-1])}"
        if segments
        else "it holds no sealed segment yet"
    )
    click.echo(
        f"replica: warning: no command of {archive} is in the selection "
        f"({chosen or 'all of it'}); {holds}",
        err=True,
    )


def _hour_of(segment: Segment) -> str:
    """``2026-11-20T23``, from the segment's ``date=``/``hour=`` directories."""
    return f"{segment.path.parent.parent.name[5:]}T{segment.path.parent.name[5:]}"
