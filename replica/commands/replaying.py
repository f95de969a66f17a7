"""``replica replay`` and ``replica serve``: an archive's commands back out, on stdout or over
the Disk-Sync WebSocket protocol."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from replica.commands.common import ARCHIVE_DIR, digest_line, range_options, warn_gap
from replica.options import Speed, api_key_from
from replica.replay.records import ReplayGap
from replica.replay.schedule import CLOCKS
from replica.schemas.errors import ReplicaError
from replica.schemas.frames import command_frame

if TYPE_CHECKING:
    from replica.replay.server import DiskSyncServer
    from replica.replay.stream import Replay

log = logging.getLogger("replica")


@click.command(name="replay")
@click.argument("archive", type=ARCHIVE_DIR)
@range_options
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
    **selection: Any,
) -> None:
    """Write ARCHIVE's commands to stdout in seq order, one replica_cmd frame of the feed per
    line, as JSON text identical on every run.

    Seqs are inclusive at both ends; --start and --end select ts_ms from --start up to but not
    including --end. Each gap in the range is a warning on stderr (an error with
    --fail-on-gap). At a speed other than max, every frame is flushed when it is due.
    """
    from replica.archive import open as open_archive

    opened = open_archive(archive)
    if not opened.layout.segments():
        click.echo(f"replica: note: {archive} has no commands yet", err=True)
    replay = opened.replay(
        speed=speed, clock=clock, precise=precise, fail_on_gap=fail_on_gap, **selection
    )
    if digest:
        click.echo(digest_line(replay, warn=True))
    else:
        _write_frames(replay, flush_each=speed is not None)


def _write_frames(replay: Replay, *, flush_each: bool) -> None:
    out = sys.stdout
    try:
        try:
            for item in replay:
                if type(item) is ReplayGap:
                    out.flush()
                    warn_gap(item)
                    continue
                out.write(command_frame(item) + "\n")
                if flush_each:
                    out.flush()
        finally:
            out.flush()
    except BrokenPipeError:
        # The reader left (``| head``): that ends the replay, and is no error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


@click.command()
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
    from replica.recorder.feedurl import is_loopback
    from replica.replay.server import DiskSyncServer, archive_frames

    api_key = None
    if api_key_env is not None or api_key_file is not None:
        api_key = api_key_from(api_key_env or "", api_key_env is not None, api_key_file)
    if api_key is None and not is_loopback(host):
        log.warning(
            "serving %s on %s with no API key: anyone who can reach the port can read it; "
            "give --api-key-env or --api-key-file",
            archive,
            host,
        )
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
