"""Importing a node's replica_cmds files into an archive: the raw segments the recorder writes.

Each block becomes one command: seq = its height, ts_ms = its time floored to milliseconds, and
ingest_ts_us = publish_ts_us = recv_ts_us = its time floored to microseconds. A node's file
carries no feed or receive times; deriving all three from the block makes every row a function
of the file alone, so importing a file again computes the same segments, byte for byte.

What the archive holds is read from the archive itself, never from a state file: a seq inside
a segment's name range is taken, whether or not the segment holds it (a recorder segment's
inner holes are its own gap records' business, and a segment is never rewritten). The other
blocks of a file become new segments, one per run of consecutive blocks in one UTC hour, so
each stays inside its date/hour partition. Holes left between segments are then recorded as
gaps with cause "import". The recorder's lock is held throughout, so an import and a
recorder never write one archive at once, and so is the maintenance lock, so that a compaction
never merges or swaps a day's segments under an import. An archive on an object store is
imported into by ``node_import_store``, which plans the same way and publishes by upload.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from replica.maintenance.node_files import BadLine, Blocks, NodeFile, node_files, read_blocks
from replica.maintenance.node_order import BlockMark, OrderCheck, capped
from replica.recorder import __version__
from replica.schemas.archive import (
    GAP_SCHEMA,
    RAW_SCHEMA,
    ArchiveLayout,
    Segment,
    hour_of,
    raw_write_options,
)
from replica.schemas.cluster import Cluster
from replica.schemas.errors import ArchiveError
from replica.schemas.files import publish_parquet, writer_alive
from replica.schemas.lock import ArchiveLock
from replica.schemas.metadata import RECORDER_KEY, SOURCE_KEY
from replica.schemas.seqranges import Range, span, subtract, union
from replica.schemas.seqspace import NODE, NODE_SOURCE_PREFIX, claim
from replica.schemas.storepath import StorePath, parquet_file

CAUSE = "import"
TASK = "replica import-node"
# Writes a table to its final path (local, or a store's key) with these Parquet write options.
Publish = Callable[[pa.Table, Path, dict[str, Any]], object]


@dataclass
class ImportSummary:
    files: int = 0  # node files read
    imported: int = 0  # blocks written by this run
    present: int = 0  # blocks the archive already held
    segments: int = 0  # raw segments written
    gaps: int = 0  # gap records written
    truncated: int = 0  # unfinished last lines skipped
    warnings: list[str] = field(default_factory=list)  # one line per thing skipped, and why
    failed: list[str] = field(default_factory=list)  # one line per file not imported


def import_node(
    paths: Iterable[str | os.PathLike[str]],
    root: str | os.PathLike[str],
    on_progress: Callable[[int, int], None] | None = None,
    cluster: Cluster | None = None,
) -> ImportSummary:
    """Import the node files ``paths`` (files, or directories searched for them) into the
    archive at ``root``, created if missing. ``on_progress(done, total)`` counts files, from
    (0, total) before the first. ``cluster`` (a Dask scheduler's address, or a
    ``distributed.Client``) reads and writes the files on its workers, which must see them at
    the same paths, and the archive too, or for ``s3://`` the same store.

    Raises ``UsageError`` for a path that is not a node file, ``ArchiveLocked`` while a
    recorder, a compaction or a decode runs on the archive. A file with a bad line is not
    imported and is named in ``failed``; the others are.
    """
    files = node_files(paths)
    if isinstance(root, StorePath):
        from replica.maintenance.node_import_store import import_node_to_store

        return import_node_to_store(files, root, on_progress, cluster)
    layout = ArchiveLayout(Path(root))
    recorder_rule = "an import and a recorder never write one archive at once"
    maintenance_rule = (
        "an import takes turns with replica compact and replica decode: run it again when "
        "that one is done"
    )
    with (
        ArchiveLock(layout.lock_path, TASK, recorder_rule),
        ArchiveLock(layout.maintenance_lock_path, TASK, maintenance_rule),
    ):
        _check_settled(layout)
        _remove_abandoned_temporaries(layout)
        claim(layout, NODE, TASK)
        return import_files(files, layout, on_progress, cluster, _publish_locally)


def import_files(
    files: list[NodeFile],
    layout: ArchiveLayout,
    on_progress: Callable[[int, int], None] | None,
    cluster: Cluster | None,
    publish: Publish,
) -> ImportSummary:
    """The import itself, once the archive is claimed (locked on disk): each file here through
    ``publish``, or on ``cluster``'s workers, then the holes left recorded."""
    summary = ImportSummary()
    segments = layout.segments()
    report = on_progress or (lambda done, total: None)
    report(0, len(files))
    if cluster is not None:
        from replica.maintenance.node_import_cluster import import_on_cluster

        import_on_cluster(files, layout, segments, summary, cluster, report)
    else:
        order = OrderCheck()
        for done, node_file in enumerate(files, 1):
            import_file(node_file, layout, segments, summary, order, publish)
            report(done, len(files))
    summary.gaps = record_holes(layout, segments, publish)
    return summary


def _check_settled(layout: ArchiveLayout) -> None:
    """Refuse an archive whose segments are not all published yet: the missing ones may hold
    the very seqs imported here, and would then overlap the imported segments."""
    if any(layout.spool_dir.glob("*.wal")):
        raise ArchiveError(
            f"{layout.root} has spool files a stopped recorder has not sealed; start "
            "'replica record' on it once (it recovers them first), then import"
        )
    if layout.compaction_journals():
        raise ArchiveError(
            f"{layout.root} has an interrupted compaction; run 'replica compact' on it to "
            "finish it, then import"
        )


def _remove_abandoned_temporaries(layout: ArchiveLayout) -> None:
    """An import killed mid-write leaves its temporary files under raw/ or gaps/; the locks
    held keep every other writer of those out, but a temporary file whose writer still runs is
    kept all the same, as decode keeps them."""
    for temporary in layout.temporary_files():
        if not writer_alive(temporary):
            temporary.unlink(missing_ok=True)


def _publish_locally(table: pa.Table, path: Path, options: dict[str, Any]) -> None:
    publish_parquet(table, path, **options)


def import_file(
    node_file: NodeFile,
    layout: ArchiveLayout,
    segments: list[Segment],
    summary: ImportSummary,
    order: OrderCheck,
    publish: Publish,
) -> None:
    """Write the blocks of one file that the archive lacks; ``segments`` gains the new ones."""
    summary.files += 1
    try:
        blocks = read_blocks(node_file)
    except (BadLine, OSError) as exc:
        summary.failed.append(unreadable(node_file, exc))
        return
    metadata = node_metadata(node_file)
    for start, stop, target in plan_file(node_file, blocks, layout, segments, summary, order):
        table = blocks_table(blocks, start, stop, metadata)
        publish(table, target, raw_write_options(table))


def unreadable(node_file: NodeFile, exc: BadLine | OSError) -> str:
    """The ``failed`` line of a file that does not read."""
    if isinstance(exc, BadLine):
        return f"{node_file.path}:{exc.number}: {exc.reason}; nothing of this file imported"
    return f"{node_file.path}: cannot read it: {exc}; nothing of this file imported"


def plan_file(
    node_file: NodeFile,
    blocks: Blocks,
    layout: ArchiveLayout,
    segments: list[Segment],
    summary: ImportSummary,
    order: OrderCheck,
    planned: set[Path] | None = None,
) -> list[tuple[int, int, Path]]:
    """The segments to write of one file's ``blocks``, as (start, stop, path): blocks
    [start, stop) at path. ``segments`` gains them, and ``summary`` counts them. ``planned``
    holds the paths of segments planned but not written yet (on a cluster), which hold every
    seq of their names."""
    path = node_file.path
    if blocks.unfinished is not None:
        summary.truncated += 1
        summary.warnings.append(
            f"{path}:{blocks.unfinished.number}: last line skipped, the node has not finished "
            f"it ({blocks.unfinished.reason}); import the file again once it has"
        )
    summary.warnings += order_warnings(node_file, blocks, order)
    if not blocks.raw:
        return []
    lo, hi = blocks.first_seq, blocks.last_seq
    taken = []
    for segment in _overlapping(segments, lo, hi):
        start, end = max(lo, segment.first_seq), min(hi, segment.last_seq)
        taken.append((start, end))
        held = (
            span(start, end) if planned and segment.path in planned else _held(segment, start, end)
        )
        summary.present += held
        if held < span(start, end):
            summary.warnings.append(
                f"{path}: {span(start, end) - held} blocks in seqs {start}-{end} fall in holes "
                f"inside {segment.path}, which is never rewritten; they stay gaps"
            )
    runs = []
    for start, stop in _runs(blocks, taken):
        first, last = lo + start, lo + stop - 1
        target = layout.segment_path(first, last, hour_of(blocks.time_us[start] // 1000))
        runs.append((start, stop, target))
        insort(segments, Segment(target, first, last), key=lambda s: (s.first_seq, s.last_seq))
        summary.segments += 1
        summary.imported += stop - start
    if planned is not None:
        planned.update(target for _, _, target in runs)
    return runs


def order_warnings(node_file: NodeFile, blocks: Blocks, order: OrderCheck) -> list[str]:
    """Blocks of the file out of the node's order (``node_order``), after those of the files
    before it: the first few."""
    found: list[str] = []
    for index, (round_, time_us) in enumerate(zip(blocks.round, blocks.time_us, strict=True)):
        where = f"{node_file.path}:{index + 1}"
        found += order.check(BlockMark(where, blocks.first_seq + index, round_, time_us))
    return capped(found, node_file.path)


def _runs(blocks: Blocks, taken: list[Range]) -> list[tuple[int, int]]:
    """Index ranges [start, stop) of the blocks whose seqs are outside ``taken``, each within
    one UTC hour: one segment each."""
    free = [True] * len(blocks.raw)
    for a, b in taken:
        free[a - blocks.first_seq : b - blocks.first_seq + 1] = [False] * span(a, b)
    hours = [hour_of(us // 1000) for us in blocks.time_us]
    found: list[tuple[int, int]] = []
    for i, is_free in enumerate(free):
        if not is_free:
            continue
        if found and found[-1][1] == i and hours[i] == hours[i - 1]:
            found[-1] = (found[-1][0], i + 1)
        else:
            found.append((i, i + 1))
    return found


def node_metadata(node_file: NodeFile) -> dict[bytes, str]:
    """The schema metadata of a segment of blocks from ``node_file``."""
    return {
        RECORDER_KEY: __version__,
        SOURCE_KEY: f"{NODE_SOURCE_PREFIX} {node_file.height}",
    }


def blocks_table(blocks: Blocks, start: int, stop: int, metadata: dict[bytes, str]) -> pa.Table:
    """Blocks [start, stop) of a file as raw rows: every column a function of the file."""
    first = blocks.first_seq
    time_us = blocks.time_us[start:stop]
    stamp = pa.array(time_us, pa.int64())
    columns = [
        pa.array(range(first + start, first + stop), pa.int64()),
        pa.array([us // 1000 for us in time_us], pa.int64()),
        stamp,
        stamp,
        stamp,
        pa.array(blocks.raw[start:stop], pa.binary()),
    ]
    return pa.Table.from_arrays(columns, schema=RAW_SCHEMA.with_metadata(metadata))


def _overlapping(segments: list[Segment], lo: int, hi: int) -> list[Segment]:
    """The segments whose name ranges meet lo-hi, of ``segments`` sorted and disjoint."""
    stop = bisect_right(segments, hi, key=lambda s: s.first_seq)
    start = stop
    while start > 0 and segments[start - 1].last_seq >= lo:
        start -= 1
    return segments[start:stop]


@contextmanager
def _reading(segment: Segment) -> Iterator[None]:
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(
            f"cannot read segment {segment.path}: {exc}; run 'replica verify' on the archive"
        ) from exc


def _held(segment: Segment, lo: int, hi: int) -> int:
    """How many seqs of lo-hi (within its name range) the segment holds: read from its footer
    when it has no holes, else from its seq column."""
    with _reading(segment):
        parquet = parquet_file(segment.path)
        if parquet.metadata.num_rows == span(segment.first_seq, segment.last_seq):
            return span(lo, hi)
        seqs = parquet.read(columns=["seq"]).column("seq")
        inside = pc.and_(pc.greater_equal(seqs, lo), pc.less_equal(seqs, hi))
        return pc.sum(inside.cast(pa.int64())).as_py() or 0


def _edge_ts_ms(segment: Segment, *, last: bool) -> int:
    """The ts_ms of the segment's first or last command, reading one row group."""
    with _reading(segment):
        parquet = parquet_file(segment.path)
        group = parquet.num_row_groups - 1 if last else 0
        ts_ms = parquet.read_row_group(group, columns=["ts_ms"]).column("ts_ms")
        edge: int = ts_ms[-1 if last else 0].as_py()
        return edge


def record_holes(layout: ArchiveLayout, segments: list[Segment], publish: Publish) -> int:
    """Record every hole between segment name ranges that no gap record covers yet; returns
    how many records were written. Holes are computed from the whole archive, so a run that
    imports nothing still completes the records of a run that stopped before writing them."""
    covered = union((g["from_seq"], g["to_seq"]) for g in layout.gap_rows(["from_seq", "to_seq"]))
    detected_ts_us = time.time_ns() // 1000
    rows: list[dict[str, Any]] = []
    reach: Segment | None = None  # the segment reaching the highest seq so far
    for segment in segments:
        if reach is not None and segment.first_seq > reach.last_seq + 1:
            hole = (reach.last_seq + 1, segment.first_seq - 1)
            for lo, hi in subtract([hole], covered):
                rows.append(
                    {
                        "from_seq": lo,
                        "to_seq": hi,
                        "missing": span(lo, hi),
                        "cause": CAUSE,
                        "detected_ts_us": detected_ts_us,
                        "before_ts_ms": _edge_ts_ms(reach, last=True),
                        "after_ts_ms": _edge_ts_ms(segment, last=False),
                    }
                )
        if reach is None or segment.last_seq > reach.last_seq:
            reach = segment
    unit_id = f"import-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
    by_path: dict[Path, list[dict[str, Any]]] = {}
    for row in rows:
        path = layout.unit_path(layout.gaps_dir, row["after_ts_ms"], unit_id)
        by_path.setdefault(path, []).append(row)
    for path, file_rows in by_path.items():
        table = pa.Table.from_pylist(file_rows, schema=GAP_SCHEMA)
        publish(table, path, {"compression": "zstd"})
    return len(rows)
