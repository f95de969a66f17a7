"""``replica import-node`` into an archive on an object store, which has no rename and no lock.

The import is planned exactly as on disk (``node_import``): against the segments the store's
archive lists, so blocks it already holds are skipped. Each new segment and gap file is written
with the local code into a scratch directory, then uploaded to its final key (``schemas.transfer``:
an object is visible only once its upload completes). The ``seq-space`` marker goes up first when
the prefix has none, and a feed archive is refused as on disk. A run killed at any point leaves
whole segments under their names, which the next run plans against: its work is only redone, and
the holes are recorded by the run that completes.

There is no lock on a store (a lock object would outlive a killed run and need a lease): running
one import per prefix at a time, and no recorder, compaction or decode on it meanwhile, is the
operator's job, as for ``compact_store``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from replica.maintenance.node_files import NodeFile
from replica.maintenance.node_import import (
    TASK,
    ImportSummary,
    Publish,
    import_file,
    record_holes,
)
from replica.maintenance.node_order import OrderCheck
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import UsageError
from replica.schemas.files import publish_parquet
from replica.schemas.seqspace import MARKER, NODE, marker_path, recorded_kind, refusal
from replica.schemas.storage import Location
from replica.schemas.storepath import StorePath
from replica.schemas.transfer import SealedFile, copy_with_retries


def import_node_to_store(
    files: list[NodeFile],
    root: StorePath,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """``import_node`` for an archive whose ``root`` is on a store, created if missing."""
    layout = ArchiveLayout(root)
    report = on_progress or (lambda done, total: None)
    with tempfile.TemporaryDirectory(prefix="replica-import-") as scratch:
        upload = _uploader(Path(scratch), root)
        _claim(layout, Path(scratch), upload)
        summary = ImportSummary()
        segments = layout.segments()
        report(0, len(files))
        order, publish = OrderCheck(), _publisher(Path(scratch), root, upload)
        for done, node_file in enumerate(files, 1):
            import_file(node_file, layout, segments, summary, order, publish)
            report(done, len(files))
        summary.gaps = record_holes(layout, segments, publish)
        return summary


def _uploader(scratch: Path, root: StorePath) -> Callable[[str], None]:
    """Upload the scratch file at ``relative`` to the same key under ``root``, then drop it."""
    local = Location(pafs.LocalFileSystem(), str(scratch), str(scratch))
    store = Location(root.location.filesystem, root.key, str(root))

    def upload(relative: str) -> None:
        built = scratch / relative
        copy_with_retries(local, store, SealedFile(relative, built.stat().st_size))
        built.unlink()

    return upload


def _publisher(scratch: Path, root: StorePath, upload: Callable[[str], None]) -> Publish:
    """Write a table of the archive in scratch with the local code (the same bytes as on
    disk), then upload it."""

    def publish(table: pa.Table, path: Path, options: dict[str, Any]) -> None:
        assert isinstance(path, StorePath)
        relative = path.key[len(root.key) :].lstrip("/")
        publish_parquet(table, scratch / relative, **options)
        upload(relative)

    return publish


def _claim(layout: ArchiveLayout, scratch: Path, upload: Callable[[str], None]) -> None:
    """``seqspace.claim`` on a store: refuse a feed archive, upload the marker if absent."""
    found = recorded_kind(layout)
    if found is not None and found != NODE:
        raise UsageError(refusal(layout.root, found, TASK, NODE))
    if not marker_path(layout.root).exists():
        (scratch / MARKER).write_text(NODE + "\n")
        upload(MARKER)
