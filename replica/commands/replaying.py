"""``replica replay`` and ``replica serve``: an archive's commands back out, on stdout or over
the Disk-Sync WebSocket protocol."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from replica.commands.clients import client_api_key, client_options
from replica.commands.common import (
    READABLE_ARCHIVE,
    Interrupted,
    digest_line,
    endpoint_option,
    range_options,
    replay_digest,
    warn_gap,
    warn_nothing_selected,
)
from replica.options import Speed
from replica.replay.records import ReplayGap
from replica.replay.schedule import CLOCKS
from replica.schemas.errors import ReplicaError, UsageError
from replica.schemas.frames import command_frame

if TYPE_CHECKING:
    from replica.replay.live import LiveHub
    from replica.replay.server import DiskSyncServer
    from replica.schemas.archive import ArchiveLayout

log = logging.getLogger("replica")


@click.command(name="replay")
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
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
@click.option(
    "--follow",
    is_flag=True,
    help="After the last archived command, go on with each one the recorder archives, until "
    "Ctrl-C (new segments are looked for every 0.2 s). Takes only --from-seq.",
)
def replay_command(
    archive: Path,
    speed: float | None,
    clock: str,
    precise: bool,
    fail_on_gap: bool,
    digest: bool,
    follow: bool,
    **selection: Any,
) -> None:
    """Write ARCHIVE's commands to stdout in seq order, one replica_cmd frame of the feed per
    line, as JSON text identical on every run.

    Seqs are inclusive at both ends; --start and --end select ts_ms from --start up to but not
    including --end. Each gap in the range is a warning on stderr (an error with
    --fail-on-gap), and so is a selection that holds no command. At a speed other than max,
    every frame is flushed when it is due. SIGINT stops it after a whole line, exit 130.
    ARCHIVE may be s3://bucket/prefix; followed there, a command comes once its segment is
    uploaded (the recorder's spool is on its own disk).
    """
    from replica.archive import open as open_archive

    if digest and speed is not None:
        raise UsageError("--digest reads as fast as it can; --speed paces frames, drop one")
    opened = open_archive(archive)
    if follow:
        if digest:
            raise UsageError("--digest needs an end; --follow has none, drop one")
        _write_frames(opened.replay(follow=True, **selection), flush_each=True)
        return
    empty = not opened.layout.segments()
    if empty:
        click.echo(f"replica: note: {archive} has no commands yet", err=True)
    replay = opened.replay(
        speed=speed, clock=clock, precise=precise, fail_on_gap=fail_on_gap, **selection
    )
    if digest:
        digested = replay_digest(replay, warn=True)
        commands = digested.commands
    else:
        commands = _write_frames(replay, flush_each=speed is not None)
    if not commands and not empty:
        warn_nothing_selected(archive, selection)
    if digest:
        click.echo(digest_line(digested))


def _write_frames(replay: Iterable[Any], *, flush_each: bool) -> int:
    """Writes the frames; returns how many. Ctrl-C while a line is being written (or flushed
    to a slow reader) takes effect once it is written, so the output ends on a whole line and
    the count is exact; a second Ctrl-C then ends it at once."""
    out, written, last_seq = sys.stdout, 0, None
    guard = _WriteGuard()
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # a parent that ignores Ctrl-C for us is obeyed
        signal.signal(signal.SIGINT, guard.on_sigint)
    try:
        try:
            for item in replay:
                if type(item) is ReplayGap:
                    with guard:
                        out.flush()
                    warn_gap(item)
                    continue
                with guard:
                    out.write(command_frame(item) + "\n")
                    written, last_seq = written + 1, item.seq
                    if flush_each:
                        out.flush()
        except KeyboardInterrupt:
            resume = ""
            if last_seq is not None:
                resume = f", seq {last_seq} (--from-seq {last_seq + 1} resumes)"
            plural = "" if written == 1 else "s"
            raise Interrupted(f"after {written} command{plural}{resume}") from None
        finally:
            if previous is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, previous)
            out.flush()
    except BrokenPipeError:
        # The reader left (``| head``): that ends the replay, and is no error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return written


class _WriteGuard:
    """Defers SIGINT while a line is being written: raised in the middle of a write, the
    KeyboardInterrupt would drop the text not yet handed to the file, or cut a line."""

    def __init__(self) -> None:
        self.writing = False
        self.deferred = False

    def on_sigint(self, signum: int, frame: object) -> None:
        if self.writing and not self.deferred:
            self.deferred = True
            return
        raise KeyboardInterrupt

    def __enter__(self) -> None:
        self.writing = True

    def __exit__(self, *exc: object) -> None:
        self.writing = False
        if self.deferred and exc[0] is None:
            raise KeyboardInterrupt


class _ServeCommand(click.Command):
    """Chooses Arrow's allocator for the server (``replay.memory``) before parsing arguments:
    converting ARCHIVE loads pyarrow, which reads the choice once."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from replica.replay.memory import choose_server_pool

        choose_server_pool()
        return super().parse_args(ctx, args)


@click.command(cls=_ServeCommand)
@click.argument("archive", type=READABLE_ARCHIVE)
@endpoint_option
@client_options(
    "--port",
    "--host",
    "--api-key",
    "Port to listen on; 0 picks a free one (the URL logged on stderr names it).",
    required=True,
)
@click.option(
    "--follow",
    is_flag=True,
    help="Serve an archive being recorded: each client gets live commands as they are "
    "archived, after the archived ones from its from_seq if it gives one.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Expose Prometheus metrics at http://HOST:PORT/metrics (needs replica[metrics]).",
)
def serve(
    archive: Path,
    port: int,
    host: str,
    api_key_env: str | None,
    api_key_file: Path | None,
    follow: bool,
    metrics_port: int | None,
) -> None:
    """Serve ARCHIVE over the Disk-Sync WebSocket protocol until SIGINT or SIGTERM.

    Each connection is its own replay, chosen by its URL's query string: from_seq, to_seq,
    start, end (as for 'replica replay') and speed (a number or max; 1 if not given), e.g.
    ws://127.0.0.1:PORT/?from_seq=482910000&speed=10. A bad parameter is answered with HTTP
    400, a wrong key with 401. A client that stops reading for 5 s is closed with 1013.

    With --follow, a client takes only from_seq: without it, it gets commands from the moment
    it connects; with it, the archived ones from there, then live, with no gap or duplicate at
    the seam. A client whose buffer of live commands (16 MiB) fills is closed with 1013.
    ARCHIVE may be s3://bucket/prefix; followed there, a command comes once its segment is
    uploaded (the recorder's spool is on its own disk).
    """
    from replica.archive import open as open_archive
    from replica.replay.server import DiskSyncServer, archive_frames

    api_key = client_api_key(api_key_env, api_key_file, host, archive, "--api-key")
    metrics = None
    if metrics_port is not None:
        from replica.replay.metrics import ServeMetrics

        metrics = ServeMetrics()
    layout = open_archive(archive).layout
    hub = None
    if follow:
        from replica.replay.live import LiveHub, follow_frames

        hub = LiveHub()
        source = follow_frames(layout, hub, metrics)
    else:
        source = archive_frames(layout, default_speed=1.0)
    server = DiskSyncServer(source, api_key=api_key, metrics=metrics)
    if metrics is not None and metrics_port is not None:
        metrics.expose(host, metrics_port)
        log.info("metrics at http://%s:%d/metrics", host, metrics_port)
    following = None if hub is None else (layout, hub)
    asyncio.run(_serve(server, host, port, archive, api_key is not None, following))


async def _serve(
    server: DiskSyncServer,
    host: str,
    port: int,
    archive: Path,
    checks_key: bool,
    following: tuple[ArchiveLayout, LiveHub] | None,
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
    follower = None
    if following is not None:
        from replica.replay.live import follow_archive

        follower = asyncio.create_task(follow_archive(*following))
    waits = [asyncio.create_task(stop.wait())] + ([follower] if follower else [])
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping: closing connections")
    await server.close()
    for task in waits:
        task.cancel()
    if follower is not None and follower.done() and not follower.cancelled():
        follower.result()  # the archive failed under the follower: its error is the exit
