"""One recorder per archive: an exclusive flock that the kernel drops when the process dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

from schemas.errors import ArchiveError, ArchiveLocked


class ArchiveLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None

    def acquire(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            lock_file = open(self._path, "a+b")  # noqa: SIM115 - held until release()
        except OSError as exc:
            raise ArchiveError(f"cannot use the archive {self._path.parent}: {exc}") from exc
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().decode(errors="replace").strip() or "unknown"
            lock_file.close()
            raise ArchiveLocked(
                f"{self._path.parent} is held by another recorder (pid {holder}); "
                "only one recorder may write an archive"
            ) from None
        lock_file.truncate(0)
        lock_file.write(str(os.getpid()).encode())
        lock_file.flush()
        self._file = lock_file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
