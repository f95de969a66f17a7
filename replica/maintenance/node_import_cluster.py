"""``import-node`` of many node files as tasks on a Dask cluster.

Reading a file (decompressing and parsing every block) and writing its segments are the work;
deciding what to write needs every file before it, and the archive as it is. So the workers read
each file first and send back its blocks' heights, rounds and times but not their bytes; this
process then plans every file in order exactly as a local import does (what the archive holds,
what files before it add, the order of blocks across files), and the workers write the planned
segments, each file's read again. A segment is published atomically under a name given by its
seqs and never rewritten, so a task run again after its worker was killed writes only what is
still missing, byte for byte what the first would have written. On an object store the workers
upload each segment to its final key, visible only once whole (``node_import_store``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from replica.maintenance.node_files import BadLine, Blocks, NodeFile, read_blocks
from replica.maintenance.node_import import (
    ImportSummary,
    blocks_table,
    node_metadata,
    plan_file,
    unreadable,
)
from replica.maintenance.node_import_store import publish_to_store
from replica.maintenance.node_order import OrderCheck
from replica.schemas.archive import ArchiveLayout, Segment, raw_write_options
from replica.schemas.cluster import Cluster, run_tasks
from replica.schemas.files import publish_parquet
from replica.schemas.storepath import StorePath, opened, task_endpoint, task_path

Runs = list[tuple[int, int, str]]  # blocks [start, stop) of a file, and the segment they make


@dataclass(frozen=True)
class FileScan:
    """One file as read on a worker: why it does not read, or its blocks without their bytes."""

    failure: BadLine | OSError | None
    blocks: Blocks | None


def scan_file_task(path: str, height: int) -> FileScan:
    try:
        blocks = read_blocks(NodeFile(Path(path), height))
    except (BadLine, OSError) as exc:
        return FileScan(exc, None)
    blocks.raw = [b""] * len(blocks.raw)  # only their count is planned with
    return FileScan(None, blocks)


def write_runs_task(path: str, height: int, runs: Runs, endpoint: str | None) -> None:
    """Read the file again and publish the segments planned of it: each target an archive's
    path, or an ``s3://`` URL opened at ``endpoint`` with the worker's own credentials."""
    node_file = NodeFile(Path(path), height)
    blocks = read_blocks(node_file)
    metadata = node_metadata(node_file)
    for start, stop, target in runs:
        table = blocks_table(blocks, start, stop, metadata)
        segment = opened(target, endpoint)
        if isinstance(segment, StorePath):
            publish_to_store(table, segment, raw_write_options(table))
        else:
            publish_parquet(table, segment, **raw_write_options(table))


def import_on_cluster(
    files: list[NodeFile],
    layout: ArchiveLayout,
    segments: list[Segment],
    summary: ImportSummary,
    cluster: Cluster,
    report: Callable[[int, int], None],
) -> None:
    """Import ``files`` as a local import does, reading and writing them on ``cluster``;
    ``report(done, total)`` after each file is written (or found to need nothing)."""
    scans: list[FileScan | None] = [None] * len(files)
    # Absolute paths for the workers, which have their own working directories; messages name
    # the files as they were given.
    scan_tasks = [(task_path(f.path), f.height) for f in files]
    for index, scan, _ in run_tasks(cluster, scan_file_task, scan_tasks, ()):
        scans[index] = scan
    order = OrderCheck()
    planned: set[Path] = set()
    writes: list[tuple[str, int, Runs, str | None]] = []
    endpoint = task_endpoint(layout.root)
    done = 0
    for node_file, scan in zip(files, scans, strict=True):
        assert scan is not None
        summary.files += 1
        runs = []
        if scan.failure is not None:
            summary.failed.append(unreadable(node_file, scan.failure))
        else:
            assert scan.blocks is not None
            runs = plan_file(node_file, scan.blocks, layout, segments, summary, order, planned)
        if runs:
            planned_runs = [(start, stop, task_path(target)) for start, stop, target in runs]
            writes.append((task_path(node_file.path), node_file.height, planned_runs, endpoint))
        else:
            done += 1
            report(done, len(files))
    for _ in run_tasks(cluster, write_runs_task, writes, ()):
        done += 1
        report(done, len(files))
    if isinstance(layout.root, StorePath):  # no temporaries: an upload is visible once whole
        return
    for temporary in layout.temporary_files():  # of killed workers: every task has finished
        temporary.unlink(missing_ok=True)
