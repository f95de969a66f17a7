"""Publishing a Parquet file so that no reader and no crash ever sees half of it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` survive a power cut, not only a crash of this process."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_parquet(table: pa.Table, path: Path, **write_options: Any) -> bool:
    """Write ``table`` to ``path`` via a temporary name, fsync and rename.

    An existing file at ``path`` is kept and nothing is written: archived files are never
    rewritten, and a recovery that recomputes a file it had already published gets the same
    content under the same name. Returns whether the file was written.
    """
    if path.exists():
        return False
    _write_atomically(table, path, os.rename, write_options)
    return True


def replace_parquet(table: pa.Table, path: Path, **write_options: Any) -> None:
    """Write ``table`` to ``path`` like ``publish_parquet``, atomically replacing a file already
    there: for derived files (decoded tables), which a newer decoder rewrites."""
    _write_atomically(table, path, os.replace, write_options)


def _write_atomically(
    table: pa.Table, path: Path, move: Callable[[Path, Path], None], write_options: dict
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as sink:
            pq.write_table(table, sink, **write_options)
            sink.flush()
            os.fsync(sink.fileno())
        move(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
