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
operator's job, as for ``compact_store``. On a cluster the workers upload the segments, each
built in a scratch directory of their own, and this process the marker and the gap files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from replica.maintenance.node_files import NodeFile
from replica.maintenance.node_import import TASK, ImportSummary, import_files
from replica.schemas.archive import ArchiveLayout
from replica.schemas.cluster import Cluster
from replica.schemas.errors import UsageError
from replica.schemas.files import publish_parquet
from replica.schemas.seqspace import NODE, marker_path, recorded_kind, refusal
from replica.schemas.storepath import StorePath
from replica.schemas.transfer import upload_file


def import_node_to_store(
    files: list[NodeFile],
    root: StorePath,
    on_progress: Callable[[int, int], None] | None = None,
    cluster: Cluster | None = None,
) -> ImportSummary:
    """``import_node`` for an archive whose ``root`` is on a store, created if missing. With
    ``cluster``, the files are read and the segments built and uploaded on its workers
    (``node_import_cluster``), planned here alike."""
    layout = ArchiveLayout(root)
    _claim(layout)
    return import_files(files, layout, on_progress, cluster, publish_to_store)


def publish_to_store(table: pa.Table, path: Path, options: dict[str, Any]) -> None:
    """Write a table of the archive in a scratch directory with the local code (the same bytes
    as on disk), then upload it to ``path``'s key."""
    assert isinstance(path, StorePath)
    with tempfile.TemporaryDirectory(prefix="replica-import-") as scratch:
        built = Path(scratch) / path.name
        publish_parquet(table, built, **options)
        upload_file(built, path)


def _claim(layout: ArchiveLayout) -> None:
    """``seqspace.claim`` on a store: refuse a feed archive, upload the marker if absent."""
    found = recorded_kind(layout)
    if found is not None and found != NODE:
        raise UsageError(refusal(layout.root, found, TASK, NODE))
    marker = marker_path(layout.root)
    if not marker.exists():
        assert isinstance(marker, StorePath)
        with tempfile.TemporaryDirectory(prefix="replica-import-") as scratch:
            built = Path(scratch) / marker.name
            built.write_text(NODE + "\n")
            upload_file(built, marker)
