"""``replica sync``: copy an archive's sealed files to an object store, or back.

What is copied, and how a copy never shows half a file: ``schemas.transfer`` (shared with
the recorder's uploader to a store).

Idempotence: a file is skipped when the destination has it at the same size and SHA-256. A
local file's digest is computed; an object store's come from a manifest (``.replica-sync.json``
under the prefix, written after each run with the digests of every file it verified), since
pyarrow's S3 client sets no user metadata and multipart ETags are no content digest. A file
whose digest is unknown is copied. A download is checked against the manifest's digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import NotAnArchive
from replica.schemas.storage import Location, locate, store_error
from replica.schemas.transfer import CHUNK, copy_with_retries, sealed_files

MANIFEST = ".replica-sync.json"


@dataclass
class SyncSummary:
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    deleted: int | None = None  # None: not asked to delete

    def line(self) -> str:
        line = f"{self.copied} files copied, {self.skipped} skipped, {self.bytes_copied} bytes"
        return line if self.deleted is None else f"{line}, {self.deleted} deleted"


def sync(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    endpoint_url: str | None = None,
    delete: bool = False,
) -> SyncSummary:
    """Copy ``archive``'s sealed files that ``dest`` lacks or holds differently; with
    ``delete``, then remove the sealed files ``dest`` has and ``archive`` no longer does (the
    hourly files a compaction replaced), after the copies, so that a reader meanwhile sees
    rows twice rather than not at all."""
    source, target = locate(archive, endpoint_url), locate(dest, endpoint_url)
    if source.is_local:
        ArchiveLayout.open(source.root)  # the one not-an-archive message every command gives
    with _store_errors(source):
        files = sealed_files(source)
    if not files:
        raise NotAnArchive(f"{source.url} is not an archive: it has no sealed file to copy")
    with _store_errors(source):
        source_digests = _manifest(source)
    with _store_errors(target):
        target_sizes = {f.relative: f.size for f in sealed_files(target)}
        target_digests = _manifest(target)
    summary = SyncSummary()
    try:
        for file in files:
            if target_sizes.get(file.relative) == file.size:
                theirs = _digest(target, file.relative, target_digests)
                if theirs is not None and theirs == _digest(source, file.relative, source_digests):
                    target_digests[file.relative] = theirs
                    summary.skipped += 1
                    continue
            with _store_errors(target):
                digest = copy_with_retries(source, target, file, source_digests.get(file.relative))
            target_digests[file.relative] = digest
            summary.copied += 1
            summary.bytes_copied += file.size
        if delete:
            summary.deleted = 0
            for relative in sorted(set(target_sizes) - {file.relative for file in files}):
                with _store_errors(target):
                    target.filesystem.delete_file(target.path(relative))
                target_digests.pop(relative, None)
                summary.deleted += 1
    finally:
        if not target.is_local and (summary.copied or summary.deleted):
            with _store_errors(target):
                _write_manifest(target, target_digests)
    return summary


def _manifest(location: Location) -> dict[str, str]:
    """The digests an earlier sync recorded at an object store (none for a local archive)."""
    if location.is_local:
        return {}
    try:
        with location.filesystem.open_input_stream(location.path(MANIFEST)) as stream:
            digests = json.loads(stream.read())["sha256"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError):
        return {}  # unreadable: every file is copied again, and a new manifest written
    return {str(k): str(v) for k, v in digests.items()}


def _write_manifest(location: Location, digests: dict[str, str]) -> None:
    body = json.dumps({"sha256": dict(sorted(digests.items()))}, indent=1).encode()
    with location.filesystem.open_output_stream(location.path(MANIFEST)) as stream:
        stream.write(body)


def _digest(location: Location, relative: str, manifest: dict[str, str]) -> str | None:
    if not location.is_local:
        return manifest.get(relative)
    sha = hashlib.sha256()
    with open(location.path(relative), "rb") as file:
        while chunk := file.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


class _store_errors:
    """Turns a store's OSError into one ``StorageError`` line naming the location; pyarrow's
    messages name the bucket, key and AWS error, never a credential, and any secret of the
    environment is masked all the same."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, OSError):
            raise store_error(self.location, exc) from None
