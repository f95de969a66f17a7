"""Exclusive locks on an archive: flocks that the kernel drops when the holder dies.

Two locks, for two rules: ``.lock`` keeps a second writer of segments (a recorder, or
``replica import-node``, ``replica heal``) out of an archive, and ``.maintenance.lock`` makes
``replica compact``, ``replica decode``, ``replica import-node`` and ``replica heal`` take turns
(a decode during a compaction would decode a merged segment while its small segments' decoded
files still exist, and count their rows twice). Compaction runs beside the recorder, so it
never takes ``.lock``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError, ArchiveLocked


class ArchiveLock:
    """Held from ``acquire()`` to ``release()`` (or through a ``with`` block), never waited for.

    The holder writes its pid and ``task`` into the file, so that whoever is refused can be told
    who holds the archive; ``rule`` says why it may not go ahead.
    """

    def __init__(
        self,
        path: Path,
        task: str = "recorder",
        rule: str = "only one recorder may write an archive",
    ) -> None:
        self._path = path
        self._task = task
        self._rule = rule
        self._file: BinaryIO | None = None

    def acquire(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a write that fails on a full disk is not tried again by close().
            lock_file = open(self._path, "a+b", buffering=0)  # noqa: SIM115 - held until release()
        except OSError as exc:
            raise ArchiveError(f"cannot use the archive {self._path.parent}: {exc}") from exc
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().decode(errors="replace").strip()
            lock_file.close()
            pid, _, task = holder.partition(" ")
            task = task or self._task
            held_by = f"another {task}" if task == self._task else task
            raise ArchiveLocked(
                f"{self._path.parent} is held by {held_by} (pid {pid or 'unknown'}); {self._rule}"
            ) from None
        try:
            lock_file.truncate(0)
            lock_file.write(f"{os.getpid()} {self._task}".encode())
        except OSError as exc:  # a full disk: the pid that tells others who holds it
            lock_file.close()
            raise ArchiveError(f"cannot use the archive {self._path.parent}: {exc}") from exc
        self._file = lock_file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ArchiveLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def maintenance_lock(layout: ArchiveLayout, task: str) -> ArchiveLock:
    """The lock ``task`` ("replica compact", "replica decode") holds while it rewrites files."""
    return ArchiveLock(
        layout.maintenance_lock_path,
        task,
        "replica compact and replica decode take turns on an archive: run it again when that "
        "one is done",
    )
