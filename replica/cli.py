"""The ``replica`` command: one click group over the commands of ``replica.commands``.

Only the CLI reads the environment, installs log handlers and signal handlers, and turns errors
into exit codes (see ``schemas.errors``); this module does the last two for every command.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from replica.commands import healing, maintenance, query, recording, replaying, report, storage
from replica.commands.common import Interrupted
from replica.recorder import __version__
from replica.schemas.errors import ReplicaError, UsageError


class ReplicaGroup(click.Group):
    """Turns a bad argument or a ``ReplicaError`` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            click.echo(f"replica: error: {exc.format_message()}", err=True)
            ctx.exit(UsageError.exit_code)
        except Interrupted as exc:
            click.echo(f"replica: interrupted {exc}", err=True)
            ctx.exit(exc.exit_code)
        except ReplicaError as exc:
            # One line even when it quotes a library's multi-line message (pyarrow's, DuckDB's).
            click.echo(f"replica: error: {' '.join(str(exc).split())}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("replica: interrupted", err=True)
            ctx.exit(Interrupted.exit_code)


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


for _command in (
    recording.record,
    recording.demo,
    replaying.replay_command,
    replaying.serve,
    maintenance.gaps,
    maintenance.verify_command,
    maintenance.decode,
    maintenance.compact,
    maintenance.import_node_command,
    healing.heal,
    query.sql,
    query.duckdb_command,
    query.stats,
    report.report,
    storage.sync,
):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="replica")
