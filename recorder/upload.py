"""The uploader of a recorder writing to a store: sealed files go from the local staging archive
(``--spool-dir``) to ``s3://bucket/prefix``, one at a time, oldest first, on a thread of its own.

Why a staging archive: the write-ahead spool must be on a local disk (an fsync every 50 ms to an
object store is no spool), and so are the sealed files until the store has them; the recorder
writes both exactly as into a local archive, and this thread only moves finished files.

Each file is copied by ``schemas.transfer`` (a multipart upload that becomes visible only when
complete), confirmed by the object's size, and only then removed from the staging archive: the
newest raw segment moves to ``.uploaded/`` instead, so that a restart knows where the archive
ends without asking the store (``recorder.store``). A file the store already holds at its size
is not sent again (a kill between an upload and its local removal). The ``seq-space`` marker is
uploaded once and kept, since the staging archive needs it too.

A store that fails is retried with exponential backoff and jitter, forever while recording:
files wait locally and ``waiting`` says how many; the status line shows it. At the end of a run
each waiting file gets one more try; what still waits goes up at the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs as pafs
from replica.recorder.policy import Backoff, BackoffPolicy
from replica.recorder.store import forget_older_uploads, uploaded_dir
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ArchiveError
from replica.schemas.seqspace import MARKER
from replica.schemas.storage import Location, locate, masked, store_error
from replica.schemas.transfer import TABLE_DIRS, SealedFile, copy_file, sealed_files

log = logging.getLogger(__name__)

_WARN_EVERY_S = 30.0
UPLOAD_NICENESS = 10


def default_spool_dir(store_url: str) -> Path:
    """``$XDG_STATE_HOME/replica/record/<hash>`` (``~/.local/state/...`` by default), one per
    store URL: state, not cache, since it holds files the store does not have yet."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    key = hashlib.sha256(store_url.rstrip("/").encode()).hexdigest()[:16]
    return Path(base) / "replica" / "record" / key


def _order(relative: str) -> tuple[int, str]:
    """The marker first (a store holding anything says what it holds), raw segments next, in
    seq order (their names sort so within an hour), then the tables that describe them."""
    if relative == MARKER:
        return 0, relative
    return (1 if relative.startswith("raw/") else 2), relative


def _prune_empty_dirs(root: Path) -> None:
    """Remove the partition directories that uploads emptied, so that they do not pile up over
    months; only at start, before any writer could be about to write into one."""
    for table in TABLE_DIRS:
        for directory, _, _ in sorted(os.walk(root / table), reverse=True):
            if Path(directory) != root / table:
                with contextlib.suppress(OSError):  # not empty
                    os.rmdir(directory)


class Uploader:
    def __init__(self, layout: ArchiveLayout, store: Location, backoff: BackoffPolicy) -> None:
        self._layout = layout
        self._staging = locate(layout.root)
        self._store = store
        self._backoff = backoff
        self._pending: deque[str] = deque()
        self._queued: set[str] = set()
        self._cond = threading.Condition()
        self._finishing = False
        self._thread = threading.Thread(target=self._run, name="replica-upload", daemon=True)
        self._warned = -math.inf

    @property
    def waiting(self) -> int:
        """Sealed files not yet confirmed on the store."""
        return len(self._pending)

    def start(self) -> None:
        """Queue what the staging archive holds (left by an earlier run, or just recovered from
        its spools) and start uploading."""
        found = sorted((f.relative for f in sealed_files(self._staging)), key=_order)
        self._enqueue(found)
        _prune_empty_dirs(self._layout.root)
        self._thread.start()

    def add(self, paths: Iterable[Path]) -> None:
        """Queue files the writer has just published in the staging archive."""
        root = self._layout.root
        self._enqueue(path.relative_to(root).as_posix() for path in paths)

    def finish(self) -> int:
        """Try each waiting file once more, then stop; how many still wait."""
        with self._cond:
            self._finishing = True
            self._cond.notify()
        self._thread.join()
        if self._pending:
            log.warning(
                "%d sealed file(s) wait in %s for %s; they go up when the recorder runs "
                "again (or with 'replica sync')",
                len(self._pending),
                self._layout.root,
                self._store.url,
            )
        return len(self._pending)

    def _enqueue(self, relatives: Iterable[str]) -> None:
        with self._cond:
            for relative in relatives:
                if relative not in self._queued:
                    self._queued.add(relative)
                    self._pending.append(relative)
            self._cond.notify()

    def _run(self) -> None:
        # Uploads can wait, the feed cannot: on Linux a thread has a niceness of its own, and
        # this one yields the CPU to the receive loop and the writers.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPLOAD_NICENESS)
        backoff = Backoff(self._backoff)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._finishing)
                if not self._pending:
                    return
                relative = self._pending[0]
            try:
                self._upload(relative)
            except Exception as exc:  # a dead thread would leave every later file waiting
                if self._finishing:
                    return
                self._warn(relative, exc)
                with self._cond:
                    self._cond.wait_for(lambda: self._finishing, backoff.next_delay())
                continue
            backoff.reset()
            with self._cond:
                self._pending.popleft()
                self._queued.discard(relative)

    def _warn(self, relative: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > _WARN_EVERY_S:
            self._warned = now
            if isinstance(exc, OSError):
                error = str(store_error(self._store, exc))
            else:
                error = masked(str(exc) or repr(exc))
            log.warning(
                "cannot upload %s: %s; %d sealed file(s) wait locally, retrying",
                relative,
                error,
                self.waiting,
            )

    def _upload(self, relative: str) -> None:
        local = self._layout.root / relative
        try:
            size = local.stat().st_size
        except FileNotFoundError:
            log.warning("%s is gone from the staging archive before its upload", local)
            return
        fs, key = self._store.filesystem, self._store.path(relative)
        there = fs.get_file_info(key)
        if relative == MARKER and there.type == pafs.FileType.File:
            return  # the store's kind was checked at start; never overwrite it
        if there.size != size:
            copy_file(self._staging, self._store, SealedFile(relative, size))
            confirmed = fs.get_file_info(key).size
            if confirmed != size:
                raise ArchiveError(
                    f"{self._store.url}/{relative} holds {confirmed} bytes after its upload, "
                    f"not {size}"
                )
        if relative == MARKER:
            return
        if relative.startswith("raw/"):
            kept = uploaded_dir(self._layout) / local.name
            kept.parent.mkdir(exist_ok=True)
            os.replace(local, kept)
            forget_older_uploads(self._layout)
        else:
            local.unlink()
