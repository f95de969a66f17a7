"""Publishing a file so that no reader and no crash ever sees half of it, and the temporary
names it is written under first.

A temporary file is ``.<name>.<pid>.tmp`` beside its final name: hidden and not ``*.parquet``,
so no glob of the archive sees it, and named after the process writing it, so a cleanup can
tell an abandoned one (its writer is gone) from one being written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TEMPORARY_GLOB = "**/.*.tmp"  # every temporary file below a directory


def temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` before moving it into place."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def temporary_writer(temporary: Path) -> int | None:
    """The pid in a temporary file's name, or None if the name is not one ``temporary_path``
    gives."""
    name = temporary.name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    pid = name.removesuffix(".tmp").rpartition(".")[2]
    return int(pid) if pid.isascii() and pid.isdigit() else None


def writer_alive(temporary: Path) -> bool:
    """Whether the process that is writing ``temporary`` still runs (False when its name does
    not say which process that is)."""
    pid = temporary_writer(temporary)
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


# On every Parquet file replica writes, whatever the other options: a CRC-32 of each page, which
# ``replica verify`` checks. Without it most bit flips inside a page go unnoticed: Parquet's zstd
# pages carry no checksum of their own, and plain-encoded payloads decode whatever their bytes are.
PAGE_CHECKSUMS = {"write_page_checksum": True}


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
    table: pa.Table, path: Path, move: Callable[[Path, Path], None], write_options: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as sink:
            pq.write_table(table, sink, **write_options, **PAGE_CHECKSUMS)
            sink.flush()
            os.fsync(sink.fileno())
        move(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class ReplacingParquetWriter:
    """A Parquet file written a table at a time under a temporary name and moved over ``path``
    by ``commit()``, so readers see the old file or the whole new one, and a large output never
    has to be in memory at once. ``discard()`` removes the temporary file instead."""

    def __init__(self, path: Path, schema: pa.Schema, **write_options: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._tmp = temporary_path(path)
        self._sink = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit or discard
        try:
            self._writer = pq.ParquetWriter(self._sink, schema, **write_options, **PAGE_CHECKSUMS)
        except BaseException:
            self.discard()
            raise

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def commit(self) -> None:
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        if hasattr(self, "_writer"):
            self._writer.close()
        self._sink.close()
        self._tmp.unlink(missing_ok=True)
