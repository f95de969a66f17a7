"""Which files of an archive are sealed, and copying one to another location without any reader
seeing half of it: shared by ``replica sync`` and the recorder's uploader to a store.

Sealed files are the Parquet files of the tables (raw, gaps, quarantine, heals, arrivals,
connections, decoded) under non-hidden directories, and the ``seq-space`` marker. Never the spool
(unsealed frames), the locks, the hidden staging and bookkeeping directories or temporary files.

An object is written directly under its final key, through pyarrow's output stream: it uploads
in parts, and S3 makes the object visible only when the upload completes, so a process killed
mid-copy leaves nothing visible (only an incomplete upload, which a bucket lifecycle rule
aborts). A local destination gets the archive's own rule instead, a temporary file renamed into
place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
from replica.schemas.errors import ArchiveError
from replica.schemas.storage import Location
from replica.schemas.storepath import StorePath

TABLE_DIRS = ("raw", "gaps", "quarantine", "heals", "arrivals", "connections", "decoded")
MARKERS = ("seq-space",)
CHUNK = 8 << 20
ATTEMPTS = 4
BACKOFF_S = 0.5


@dataclass(frozen=True)
class SealedFile:
    relative: str  # ``/``-separated, under the archive's root
    size: int


def sealed_files(location: Location) -> list[SealedFile]:
    """The sealed files of the archive at ``location``, by path relative to the root, sorted."""
    fs, found = location.filesystem, []
    for marker in MARKERS:
        info = fs.get_file_info(location.path(marker))
        if info.type == pafs.FileType.File:
            found.append(SealedFile(marker, info.size))
    for table in TABLE_DIRS:
        selector = pafs.FileSelector(location.path(table), recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            relative = info.path[len(location.root) :].lstrip("/")
            if info.type == pafs.FileType.File and is_sealed(relative):
                found.append(SealedFile(relative, info.size))
    return sorted(found, key=lambda f: f.relative)


def is_sealed(relative: str) -> bool:
    """Whether a path under a table directory names a sealed file (not a hidden or temporary
    one)."""
    parts = relative.split("/")
    return relative.endswith(".parquet") and not any(part.startswith(".") for part in parts)


def copy_with_retries(
    source: Location, target: Location, file: SealedFile, expected: str | None = None
) -> str:
    """Copy one file, retrying a failure with exponential backoff and full jitter; the
    SHA-256 of what was copied."""
    for attempt in range(ATTEMPTS):
        try:
            return copy_file(source, target, file, expected)
        except OSError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, BACKOFF_S * 2**attempt))
    raise AssertionError("unreachable")


def copy_file(
    source: Location, target: Location, file: SealedFile, expected: str | None = None
) -> str:
    """Copy ``file`` once; its SHA-256. Raises ``ArchiveError`` when what was read is not
    ``file.size`` bytes (or not ``expected``'s digest), ``OSError`` when a request fails."""
    destination = target.path(file.relative)
    if target.is_local:
        final = Path(destination)
        final.parent.mkdir(parents=True, exist_ok=True)
        destination = str(final.with_name(f".{final.name}.sync.tmp"))
    sha, written = hashlib.sha256(), 0
    try:
        with (
            source.filesystem.open_input_stream(source.path(file.relative)) as reader,
            target.filesystem.open_output_stream(destination) as writer,
        ):
            while chunk := reader.read(CHUNK):
                sha.update(chunk)
                writer.write(chunk)
                written += len(chunk)
        digest = sha.hexdigest()
        if written != file.size or (expected is not None and digest != expected):
            raise ArchiveError(
                f"{source.url}/{file.relative} changed or is damaged: read {written} bytes "
                f"with SHA-256 {digest}, expected {file.size} bytes"
                + (f" with SHA-256 {expected}" if expected else "")
            )
    except BaseException as exc:
        _remove_bad_copy(target, destination, file.size, damaged=isinstance(exc, ArchiveError))
        raise
    if target.is_local:
        os.replace(destination, target.path(file.relative))
    return digest


def _remove_bad_copy(target: Location, destination: str, size: int, damaged: bool) -> None:
    """pyarrow cannot abort an upload, and closing completes it: what a failed copy left under
    the key is removed, so that a short or damaged object does not stand for the file. A failed
    request completes nothing, so an object of the file's size found after one is an earlier
    run's whole copy, and is kept."""
    fs = target.filesystem
    with contextlib.suppress(OSError):
        if target.is_local or damaged or fs.get_file_info(destination).size != size:
            fs.delete_file(destination)


def upload_file(built: Path, path: StorePath) -> None:
    """The local file ``built`` to ``path``'s key, visible once whole: what a writer on a store
    builds locally with the local code (the same bytes as on disk), then publishes."""
    local = Location(pafs.LocalFileSystem(), str(built.parent), str(built.parent))
    store = Location(path.location.filesystem, path.parent.key, str(path.parent))
    copy_with_retries(local, store, SealedFile(built.name, built.stat().st_size))
