"""Replacing a day's directories together: each built aside, then all swapped in, journalled.

    ARCHIVE/.compact/date=D/raw              built to replace raw/date=D
    ARCHIVE/.compact/date=D/decoded/<table>  built to replace decoded/<table>/date=D
    ARCHIVE/.compact/date=D.json             the journal: which directory replaces which

A staged directory starts as hard links to the files of the live one, less those it retires,
then gains the new files: nothing unchanged is copied. It holds a ``.staged`` file until it is
swapped in. The journal is published, atomically and fsynced, once every staged directory is
complete and before the first swap, so a run killed before it leaves only builds, which the next
run throws away, and a run killed after it leaves swaps, which the next run finishes: a staged
directory still holding ``.staged`` is swapped in, one without it holds the old content.

Each swap is one ``exchange``: a reader of a directory sees all of the old or all of the new.
A file that appeared in a live directory after it was staged is swapped out with it, and moved
back; the rest of the old content is removed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError
from replica.schemas.files import fsync_dir, temporary_path
from replica.schemas.swap import exchange

SENTINEL = ".staged"


@dataclass(frozen=True)
class Swap:
    live: Path
    staged: Path
    retired: frozenset[str]  # the files the staged directory replaces, as relative paths


@dataclass
class DayStaging:
    """The new directories of one day (``partition``, date=YYYY-MM-DD), as they are built."""

    layout: ArchiveLayout
    partition: str
    swaps: list[Swap] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return self.layout.compact_dir / self.partition

    @property
    def journal(self) -> Path:
        return self.layout.compact_dir / f"{self.partition}.json"

    def stage(self, live: Path, name: str, retired: set[str]) -> Path:
        """A new directory, ``name`` under this day's, to replace ``live``: every file of it
        linked but the ``retired`` ones and hidden ones (temporaries). Returns it, for the caller
        to write the new files into."""
        staged = self.dir / name
        staged.mkdir(parents=True)
        (staged / SENTINEL).touch()
        for path in sorted(live.rglob("*")):
            relative = path.relative_to(live)
            if path.is_dir():
                (staged / relative).mkdir()
            elif relative.as_posix() not in retired and not path.name.startswith("."):
                os.link(path, staged / relative)
        self.swaps.append(Swap(live, staged, frozenset(retired)))
        return staged

    def publish(self) -> None:
        """Make every staged directory durable, then the journal: from here on the swaps
        happen, by this run or, if it dies, by the next."""
        for swap in self.swaps:
            for directory in (swap.staged, *(p for p in swap.staged.rglob("*") if p.is_dir())):
                fsync_dir(directory)
        root = self.layout.root
        entries = [
            {
                "live": str(swap.live.relative_to(root)),
                "staged": str(swap.staged.relative_to(root)),
                "retired": sorted(swap.retired),
            }
            for swap in self.swaps
        ]
        tmp = temporary_path(self.journal)
        with open(tmp, "w") as sink:
            json.dump({"swaps": entries}, sink, indent=1)
            sink.flush()
            os.fsync(sink.fileno())
        os.rename(tmp, self.journal)
        fsync_dir(self.journal.parent)

    def commit(self) -> None:
        self.publish()
        try:
            swap_in(self.swaps[0])
        except ArchiveError:
            # Nothing is swapped (a filesystem without the exchange, say): without its journal
            # this is an abandoned build, and a decode is not held up by a compaction that
            # never began.
            self.journal.unlink()
            raise
        finish(self.layout, self.journal)


def load_swaps(layout: ArchiveLayout, journal: Path) -> list[Swap]:
    """The swaps a journal lists; ``ArchiveError`` naming it if it cannot be read, before any
    swap is made."""
    try:
        entries = json.loads(journal.read_text())["swaps"]
        return [
            Swap(layout.root / e["live"], layout.root / e["staged"], frozenset(e["retired"]))
            for e in entries
        ]
    except (OSError, ValueError, LookupError, TypeError) as exc:
        raise ArchiveError(
            f"cannot read the compaction journal {journal} ({type(exc).__name__}: {exc}); "
            "nothing was changed"
        ) from None


def swap_in(swap: Swap) -> None:
    """Exchange the staged directory with the live one, unless that is done already."""
    if (swap.staged / SENTINEL).exists():
        exchange(swap.live, swap.staged)
        fsync_dir(swap.live.parent)
        fsync_dir(swap.staged.parent)


def settle(swap: Swap) -> None:
    """After the swap: move back what appeared meanwhile, remove the old content and the
    sentinel that came in with the new."""
    old = swap.staged
    if old.is_dir():
        for path in sorted(old.rglob("*")):
            relative = path.relative_to(old).as_posix()
            target = swap.live / relative
            if path.is_dir() or relative in swap.retired or target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
            fsync_dir(target.parent)
        shutil.rmtree(old)
    (swap.live / SENTINEL).unlink(missing_ok=True)


def finish(layout: ArchiveLayout, journal: Path) -> None:
    """Complete the swaps ``journal`` lists, whether this run or a killed one published it."""
    swaps = load_swaps(layout, journal)
    for swap in swaps:
        swap_in(swap)
    for swap in swaps:
        settle(swap)
    day_dir = journal.with_suffix("")
    if day_dir.is_dir():
        shutil.rmtree(day_dir)
    journal.unlink()
    fsync_dir(journal.parent)
    if not any(journal.parent.iterdir()):
        journal.parent.rmdir()


def finish_interrupted(layout: ArchiveLayout) -> list[str]:
    """Finish the swaps of every journal a killed run left, and remove its abandoned builds;
    returns the days (YYYY-MM-DD) whose compaction this finished."""
    finished = []
    for journal in layout.compaction_journals():
        finish(layout, journal)
        finished.append(journal.stem.removeprefix("date="))
    if layout.compact_dir.is_dir():
        for leftover in layout.compact_dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        layout.compact_dir.rmdir()
    return finished
