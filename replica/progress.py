"""A progress bar on a terminal, nothing at all in cron."""

from __future__ import annotations

import sys

import click


class ProgressBar:
    def __init__(self, *, enabled: bool, label: str) -> None:
        self._enabled = enabled
        self._label = label
        self._bar = None

    def start(self, total: int) -> None:
        if self._enabled and total:
            self._bar = click.progressbar(length=total, label=self._label, file=sys.stderr)
            self._bar.__enter__()

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
