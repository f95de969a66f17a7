"""Command-line value types: durations, UTC times, speeds, and where an API key comes from."""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from replica.replay.schedule import parse_speed
from replica.schemas.errors import UsageError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_DATE_ONLY = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType[timedelta]):
    name = "duration"

    def convert(
        self, value: str | timedelta, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = value.strip().lower()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            self.fail(
                f"{value!r} is not a duration; use e.g. 90s, 15m, 24h, 1d or 1h30m", param, ctx
            )
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
        if seconds <= 0:
            self.fail(f"{value!r} must be longer than zero", param, ctx)
        return timedelta(seconds=seconds)


class UtcTime(click.ParamType[datetime]):
    """An ISO 8601 time with a zone, or a date alone, which means its midnight UTC (a day is a
    UTC day everywhere in an archive)."""

    name = "time"

    def convert(
        self, value: str | datetime, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 time such as 2026-11-22T00:00Z or a date such as "
                "2026-11-22 (midnight UTC)",
                param,
                ctx,
            )
        if _DATE_ONLY.fullmatch(value.strip()):
            return moment.replace(tzinfo=UTC)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no time zone; add Z for UTC or an offset", param, ctx)
        return moment.astimezone(UTC)


class Speed(click.ParamType[float | None]):
    """A replay's pace: a number above zero (1 is the original), or ``max`` (None)."""

    name = "speed"

    def convert(
        self, value: str | float | None, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None or isinstance(value, float):
            return value
        try:
            return parse_speed(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def api_key_from(
    env_name: str, env_explicit: bool, key_file: Path | None, option: str = "--api-key"
) -> str | None:
    """The API key, read from a file or the environment, never from the command line.

    Without a key the recorder connects unauthenticated, which suits a loopback replay; the
    live feed then refuses it and the error says how to give one. ``option`` names the pair of
    options the key came from (``--api-key`` for ``-env`` and ``-file``), for the errors.
    """
    if key_file is not None:
        if env_explicit:
            raise UsageError(f"give the API key by {option}-file or {option}-env, not both")
        mode = key_file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            click.echo(
                f"replica: warning: {key_file} is readable by other users; chmod 600 {key_file}",
                err=True,
            )
        key = key_file.read_text(encoding="utf-8").strip()
        if not key:
            raise UsageError(f"API key file {key_file} is empty")
        return key
    key = os.environ.get(env_name, "").strip()
    if env_explicit and not key:
        raise UsageError(f"environment variable {env_name} (from {option}-env) is not set")
    return key or None
