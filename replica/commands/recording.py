"""``replica record`` and ``replica demo``: the feed into an archive."""

from __future__ import annotations

import asyncio
import logging
import signal
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from replica.commands.clients import client_api_key, client_options
from replica.commands.common import endpoint_option, given_endpoint, tune_garbage_collector
from replica.options import Duration, UtcTime, api_key_from
from replica.schemas.errors import ReplicaError, UsageError
from replica.schemas.redact import redact

if TYPE_CHECKING:
    from replica.recorder.recorder import Recorder
    from replica.relay import RecordRelay

log = logging.getLogger(__name__)


@click.command()
@click.argument("urls", metavar="URL [URL ...]", nargs=-1, required=True)
@click.argument("archive", metavar="ARCHIVE")
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
@click.option(
    "--gap-wait",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="With several URLs: seconds to wait for another endpoint to deliver a missing seq "
    "before recording it as a gap.",
)
@click.option(
    "--no-arrivals",
    is_flag=True,
    help="With several URLs: do not keep every delivery's time in the arrivals table.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Expose Prometheus metrics at http://HOST:PORT/metrics (needs replica[metrics]).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics listen on (HOST above).",
)
@client_options(
    "--serve",
    "--serve-host",
    "--serve-api-key",
    "Also serve what is recorded to Disk-Sync clients on this port, live or from any past "
    "from_seq; 0 picks a free one (the URL logged on stderr names it).",
    required=False,
)
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With an s3:// ARCHIVE: the local directory holding the spool and the sealed files "
    "until uploaded (default: $XDG_STATE_HOME/replica/record/<hash of ARCHIVE>, "
    "$XDG_STATE_HOME defaulting to ~/.local/state).",
)
@endpoint_option
@click.pass_context
def record(
    ctx: click.Context,
    urls: tuple[str, ...],
    archive: str,
    api_key_env: str,
    api_key_file: Path | None,
    auth: str,
    duration: timedelta | None,
    until: datetime | None,
    segment_seconds: float,
    segment_rows: int,
    status_seconds: float,
    gap_wait: float,
    no_arrivals: bool,
    metrics_port: int | None,
    metrics_host: str,
    serve: int | None,
    serve_host: str,
    serve_api_key_env: str | None,
    serve_api_key_file: Path | None,
    spool_dir: Path | None,
) -> None:
    """Tail the Disk-Sync feed at URL into ARCHIVE until stopped.

    Several URLs (endpoints of the same feed) are recorded at once, one connection each: every
    seq is archived once, from whichever delivers it first; a seq is a gap only when none did.

    SIGTERM or SIGINT, --duration and --until end the run cleanly (exit 0). Exit codes:
    1 unexpected error, 2 bad usage, 3 authentication refused, 4 archive held by another
    recorder, 5 the --duration/--until window recorded no command. The last line on stdout is
    a JSON summary of the run.

    With --serve, clients connect as to 'replica serve --follow': without from_seq they get
    commands from the moment they connect; with ?from_seq=N, the archived ones from N, then
    live, with no gap or duplicate at the seam. A command is sent only once it is on the spool.
    A client whose buffer of live commands (16 MiB) fills is closed with 1013.

    ARCHIVE may be s3://bucket/prefix: the spool and each sealed file stay in --spool-dir until
    uploaded; a store that is down only makes them wait (the status line counts them).
    """
    from replica.recorder.recorder import Recorder, RecorderConfig
    from replica.recorder.upload import default_spool_dir
    from replica.schemas.storage import is_remote

    env_explicit = ctx.get_parameter_source("api_key_env") is not ParameterSource.DEFAULT
    api_key = api_key_from(api_key_env, env_explicit, api_key_file)
    now = datetime.now(UTC)
    ends = [now + duration] if duration is not None else []
    ends += [until] if until is not None else []
    if until is not None and until <= now:
        raise UsageError(f"--until {until.isoformat()} is already past")
    store = archive if is_remote(archive) else None
    if store is None and Path(archive).exists() and not Path(archive).is_dir():
        raise UsageError(f"ARCHIVE {archive} is a file; give a directory or s3://bucket/prefix")
    endpoint_url = given_endpoint(ctx)
    if store is None and (spool_dir is not None or endpoint_url is not None):
        raise UsageError(
            "--spool-dir and --endpoint-url are for an s3:// ARCHIVE; a local archive keeps "
            "its spool inside it"
        )
    staging = (spool_dir or default_spool_dir(archive)) if store else Path(archive)
    relay = _relay(ctx, archive, staging, endpoint_url, serve_api_key_env, serve_api_key_file)
    config = RecorderConfig(
        urls=urls,
        archive=staging,
        store=store,
        endpoint_url=endpoint_url,
        api_key=api_key,
        auth=auth,
        segment_seconds=segment_seconds,
        segment_rows=segment_rows,
        status_seconds=status_seconds,
        deadline=min(ends) if ends else None,
        gap_wait=gap_wait,
        arrivals=not no_arrivals,
    )
    recorder = Recorder(config, on_archived=None if relay is None else relay.publish)
    if metrics_port is not None:
        from replica.recorder.metrics import RecorderMetrics

        metrics = RecorderMetrics(recorder)
        if relay is not None:
            metrics.relay_clients = lambda: relay.hub.clients
            metrics.relay_backlog = relay.hub.backlog
            relay.hub.latency = metrics.relay_latency
        metrics.expose(metrics_host, metrics_port)
        log.info("metrics at http://%s:%d/metrics", metrics_host, metrics_port)
    tune_garbage_collector()
    serving = None if relay is None or serve is None else (relay, serve_host, serve)
    ctx.exit(asyncio.run(_record(recorder, api_key, serving)))


def _relay(
    ctx: click.Context,
    archive: str,
    staging: Path,
    endpoint_url: str | None,
    api_key_env: str | None,
    api_key_file: Path | None,
) -> RecordRelay | None:
    """The clients' side of ``--serve``, or None without it: reading the past from the local
    archive, or from a store recording's staging directory and its store."""
    if ctx.params["serve"] is None:
        for name in ("serve_host", "serve_api_key_env", "serve_api_key_file"):
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} is for the clients of --serve PORT, which is not given")
        return None
    from replica.relay import RecordRelay, StagedStore
    from replica.schemas.archive import ArchiveLayout
    from replica.schemas.storage import is_remote
    from replica.schemas.storepath import store_root

    host = ctx.params["serve_host"]
    api_key = client_api_key(api_key_env, api_key_file, host, archive, "--serve-api-key")
    layout = ArchiveLayout(staging)
    if is_remote(archive):
        layout = StagedStore(staging, ArchiveLayout(store_root(archive, endpoint_url)))
    return RecordRelay(layout, api_key)


async def _record(
    recorder: Recorder, api_key: str | None, serving: tuple[RecordRelay, str, int] | None
) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, recorder.stop, signal.Signals(signum).name)
    try:
        if serving is not None:
            await _start_serving(*serving, recorder.config.archive)
        summary = await recorder.run()
    except ReplicaError as exc:
        click.echo(f"replica: error: {exc}", err=True)
        summary = recorder.summary()
        if summary.exit_code == 0:  # it failed before the recorder ran (--serve's port)
            summary.ended_by, summary.exit_code = type(exc).__name__, exc.exit_code
            summary.error = str(exc)
    except Exception:
        click.echo(redact(traceback.format_exc(), api_key), err=True, nl=False)
        summary = recorder.summary()
        summary.ended_by, summary.exit_code = "unexpected error", 1
    finally:
        if serving is not None:
            await serving[0].close()
    click.echo(summary.to_json())
    return summary.exit_code


async def _start_serving(relay: RecordRelay, host: str, port: int, archive: object) -> None:
    port = await relay.start(host, port)
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %s as it is recorded at ws://%s:%d", archive, shown, port)


@click.command()
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default="replica-demo"
)
def demo(directory: Path) -> None:
    """Record the bundled fixture feed from a local server into DIRECTORY: no key, no network."""
    from replica.demo import run_demo

    asyncio.run(run_demo(directory, click.echo))
