"""The options of a command that serves clients over the Disk-Sync protocol: ``serve``, and
``record --serve``, which prefixes them so they cannot be taken for the feed's own key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from replica.options import api_key_from

Command = TypeVar("Command", bound=Callable[..., Any])

log = logging.getLogger("replica")


def client_options(
    port: str, host: str, keys: str, port_help: str, *, required: bool
) -> Callable[[Command], Command]:
    """The port and address to listen on, and where the key clients must present comes from:
    ``{port}``, ``{host}``, ``{keys}-env`` and ``{keys}-file``."""

    def add(command: Command) -> Command:
        for option in reversed(
            [
                click.option(
                    port, type=click.IntRange(0, 65535), required=required, help=port_help
                ),
                click.option(host, default="127.0.0.1", show_default=True, help=_HOST_HELP),
                click.option(f"{keys}-env", metavar="NAME", help=_ENV_HELP.format(keys=keys)),
                click.option(
                    f"{keys}-file",
                    type=click.Path(exists=True, dir_okay=False, path_type=Path),
                    help="File holding the key clients must present (instead of the environment).",
                ),
            ]
        ):
            command = option(command)
        return command

    return add


_HOST_HELP = "Address to listen on for clients."
_ENV_HELP = (
    "Accept only clients presenting the key in this environment variable (x-api-key header or "
    "api_key query). Without this or {keys}-file, no key is checked."
)


def client_api_key(
    env_name: str | None, key_file: Path | None, host: str, what: str | Path, keys: str
) -> str | None:
    """The key clients must present, or None to check none, which is said as a warning when
    the address is reachable from other machines."""
    from replica.recorder.feedurl import is_loopback

    api_key = None
    if env_name is not None or key_file is not None:
        api_key = api_key_from(env_name or "", env_name is not None, key_file, keys)
    if api_key is None and not is_loopback(host):
        log.warning(
            "serving %s on %s with no API key: anyone who can reach the port can read it; "
            "give %s-env or %s-file",
            what,
            host,
            keys,
            keys,
        )
    return api_key
