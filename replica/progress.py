"""A progress bar on a terminal, nothing at all in cron.

Every long CLI command reports progress the same way: the library takes an
``on_progress(done, total)`` callback, called with ``(0, total)`` before the first unit and again
after each one, and ``progress_bar`` turns those calls into a ``rich`` bar on stderr. Without a
terminal on stderr, or with ``--quiet``, the callback does nothing and ``rich`` is not even
imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

OnProgress = Callable[[int, int], None]


def _ignore(done: int, total: int) -> None:
    pass


@contextmanager
def progress_bar(label: str, *, quiet: bool = False) -> Iterator[OnProgress]:
    """An ``on_progress`` callback drawing a bar named ``label`` on stderr while the block runs;
    the bar appears at the first call with a total above zero (none for nothing to do)."""
    if quiet or not sys.stderr.isatty():
        yield _ignore
        return
    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and total:
            bar = _Bar(label, total)
        if bar is not None:
            bar.show(done, total)

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()


class _Bar:
    def __init__(self, label: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task(label, total=total)
        self._progress.start()

    def show(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        self._progress.stop()
