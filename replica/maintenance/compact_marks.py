"""Which days compaction has done, so that a nightly run does not plan them again.

    ARCHIVE/.compacted/date=YYYY-MM-DD.json   {"files": {"hour=HH/<name>.parquet": size, ...}}

A mark records the day's raw files as the compaction left them. A day is done while its files
are exactly those: a day only gains files after it closed through ``replica import-node`` (or a
repair), and any file added, removed or rewritten to another size makes the mark stale, without
those writers having to know about it. Checking a mark lists one day's directory, not the
archive, and opens no file. Marks live outside ``raw/`` so that no swap of a day's directory
carries a stale one along.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

from replica.schemas.archive import ArchiveLayout, day_partition
from replica.schemas.files import fsync_dir, temporary_path

MARKS_DIR = ".compacted"


def mark_path(layout: ArchiveLayout, day: date) -> Path:
    return layout.root / MARKS_DIR / f"{day_partition(day)}.json"


def day_files(layout: ArchiveLayout, day: date) -> dict[str, int]:
    """Every Parquet file under the day's raw hours (temporaries are hidden), with its size."""
    files: dict[str, int] = {}
    day_dir = layout.raw_dir / day_partition(day)
    if not day_dir.is_dir():
        return files
    with os.scandir(day_dir) as hours:
        for hour in hours:
            if not hour.is_dir() or hour.name.startswith("."):
                continue
            with os.scandir(hour.path) as entries:
                for entry in entries:
                    if entry.name.endswith(".parquet") and not entry.name.startswith("."):
                        files[f"{hour.name}/{entry.name}"] = entry.stat().st_size
    return files


def is_done(layout: ArchiveLayout, day: date) -> bool:
    """Whether ``day`` was compacted and has not gained, lost or changed a file since."""
    try:
        recorded = json.loads(mark_path(layout, day).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no mark, or one a crash or a person damaged: plan the day again
    return bool(recorded == day_files(layout, day))


def mark_done(layout: ArchiveLayout, day: date) -> None:
    """Record the day's current files as compacted (atomically: a reader sees the old mark or
    the new one)."""
    path = mark_path(layout, day)
    path.parent.mkdir(exist_ok=True)
    tmp = temporary_path(path)
    tmp.write_text(json.dumps({"files": day_files(layout, day)}, sort_keys=True))
    os.rename(tmp, path)
    fsync_dir(path.parent)
