"""Decoding an archive's raw segments into its decoded tables: the decoder's I/O edge.

A segment counts as decoded when its ``_segments`` file exists and names the running decoder
version and the segment's size, so a nightly run decodes only what is new or what an older
decoder wrote, and a second run does nothing. Each output file is replaced atomically and the
``_segments`` file is written last: a run killed halfway leaves every file whole, and the next
run redoes the segment it was in. That holds for each segment alone, so segments are decoded in
parallel the same way wherever they run: on local worker processes (``--jobs``) or as tasks on a
Dask cluster (``--cluster``), on disk or on an object store, whose workers open the store
themselves (``schemas.storepath.opened``).

Decoded files of a raw segment that no longer exists are left alone: whoever removed the raw
file (a compaction, or a retention policy that keeps only decoded tables) knows whether they are
still wanted. A decode takes turns with ``replica compact`` (``schemas.lock.maintenance_lock``),
and does not start while a killed compaction is unfinished: it would decode merged segments
beside their inputs' decoded files. On an object store (``decoder.store_output``) there is no
lock: one maintenance process per prefix at a time is the operator's job.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from replica.decoder.core import Decoder
from replica.decoder.marker import decoded_by, decoded_metadata, marker_table
from replica.decoder.messages import PayloadMessage, contract_v1, from_descriptor_set
from replica.decoder.store_output import decode_segment_to_store
from replica.schemas.archive import ArchiveLayout, Segment, raw_batch_rows
from replica.schemas.cluster import Cluster, run_tasks
from replica.schemas.decoded import DECODED_DIR, DECODED_ZSTD_LEVEL, SEGMENTS_TABLE, decoded_path
from replica.schemas.errors import ArchiveError
from replica.schemas.files import (
    TEMPORARY_GLOB,
    ReplacingParquetWriter,
    replace_parquet,
    writer_alive,
)
from replica.schemas.lock import maintenance_lock
from replica.schemas.storepath import (
    StorePath,
    opened,
    parquet_file,
    read_schema,
    task_endpoint,
    task_path,
)


@dataclass(frozen=True)
class MessageSpec:
    """How to get the payload message in any process: a descriptor set and a message name, or
    neither for contract v1."""

    descriptor_set: str | os.PathLike[str] | None = None
    name: str | None = None

    def load(self) -> PayloadMessage:
        if self.descriptor_set is None or self.name is None:
            return contract_v1()
        return from_descriptor_set(self.descriptor_set, self.name)


@dataclass
class DecodeSummary:
    segments: int = 0  # raw segments in the archive
    decoded: int = 0  # of which decoded by this run
    rows: Counter[str] = field(default_factory=Counter)  # rows written by this run, per table
    failed: list[str] = field(default_factory=list)  # one line per segment that did not decode

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "decoded": self.decoded,
            "up_to_date": self.segments - self.decoded - len(self.failed),
            "rows": dict(sorted(self.rows.items())),
            "failed": self.failed,
        }


def _is_current(root: Path, segment: Segment, version: bytes) -> bool:
    marker = decoded_path(root, SEGMENTS_TABLE, segment)
    try:
        metadata = read_schema(marker).metadata
    except (OSError, pa.ArrowInvalid):
        return False
    return decoded_by(metadata, segment.path) == version


def remove_abandoned_temporaries(root: Path, *, all_of_them: bool = False) -> None:
    """A decode killed mid-write leaves its temporary files; one still running keeps its own.
    ``all_of_them`` once every task of a cluster run has finished: a worker killed on another
    machine left them, whose pid says nothing here. A store has none: an object is visible
    only once its upload completes."""
    if isinstance(root, StorePath):
        return
    for temporary in (root / DECODED_DIR).glob(TEMPORARY_GLOB):
        if all_of_them or not writer_alive(temporary):
            temporary.unlink(missing_ok=True)


def pending_segments(root: Path, decoder_version: str) -> tuple[int, list[Segment]]:
    """How many raw segments the archive has, and those not decoded by this version."""
    segments = ArchiveLayout(root).segments()
    version = decoder_version.encode()
    return len(segments), [s for s in segments if not _is_current(root, s, version)]


def _stale_outputs(root: Path, segment: Segment, keep: set[str]) -> Iterator[Path]:
    top = root / DECODED_DIR
    for table_dir in top.iterdir() if top.is_dir() else ():
        if table_dir.name not in keep:
            path = decoded_path(root, table_dir.name, segment)
            if path.exists():
                yield path


def decode_segment(root: Path, segment: Segment, decoder: Decoder) -> dict[str, int]:
    """Decode one raw segment into its decoded files; returns rows written per table.

    The segment is read and decoded a batch of rows at a time and each table written as it
    comes, so memory is bounded by a batch, not by the segment."""
    if isinstance(root, StorePath):
        return decode_segment_to_store(root, segment, decoder, decode_segment)
    metadata = decoded_metadata(decoder.version.encode(), segment.path)
    options = {"compression": "zstd", "compression_level": DECODED_ZSTD_LEVEL}
    writers: dict[str, ReplacingParquetWriter] = {}
    rows: Counter[str] = Counter()
    try:
        raw = parquet_file(segment.path)
        batch_rows = raw_batch_rows(raw.metadata)
        for batch in raw.iter_batches(batch_rows, columns=["seq", "ts_ms", "raw"]):
            seqs, ts_ms, payloads = (column.to_pylist() for column in batch.columns)
            for name, table in decoder.decode(seqs, ts_ms, payloads).items():
                if name not in writers:
                    path = decoded_path(root, name, segment)
                    schema = decoder.schemas[name].with_metadata(metadata)
                    writers[name] = ReplacingParquetWriter(path, schema, **options)
                writers[name].write(table)
                rows[name] += table.num_rows
        _commit_together(writers.values())
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    for path in _stale_outputs(root, segment, {SEGMENTS_TABLE, *writers}):
        path.unlink()
    counts = dict(sorted(rows.items()))
    marker = marker_table(counts, metadata)
    replace_parquet(marker, decoded_path(root, SEGMENTS_TABLE, segment), **options)
    return counts


def _commit_together(writers: Iterable[ReplacingParquetWriter]) -> None:
    """Commit a segment's decoded files at once, each on its own thread: one after another,
    their two fsyncs each (file and directory) were a third of a segment's time, and, the disk
    being shared, the part of a decode that two workers or jobs did not do in parallel. The
    filesystem folds concurrent fsyncs into a few journal commits. Every file is committed
    before the segment's marker is written, as before."""
    with ThreadPoolExecutor(thread_name_prefix="decode-commit") as pool:
        for committed in [pool.submit(writer.commit) for writer in writers]:
            committed.result()


_worker_decoder: Decoder | None = None


def _exit_with_parent() -> None:
    """End this worker as soon as its parent is gone, however it went (``kill -9`` included).

    An orphaned worker would otherwise wait for work forever, holding its memory: its siblings
    keep the task queue's pipe open. multiprocessing gives each spawned child a sentinel, a pipe
    whose other end only the parent holds, so it becomes readable when the parent dies, at once
    and on every platform. A thread waits on it; Linux's PR_SET_PDEATHSIG would be Linux only,
    and fires when the parent *thread* that started the worker ends, not the process."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)  # files half written are temporaries, removed by the next run

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(spec: MessageSpec) -> None:
    """Runs in each worker process, which exists only to decode: it ends with its parent, and
    its garbage collector is tuned as the CLI tunes the main process's."""
    global _worker_decoder
    # Ctrl-C reaches the whole process group: the parent decides, and cancels what is queued.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    _worker_decoder = Decoder(spec.load())
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _decode_in_worker(
    root: str, path: str, first_seq: int, last_seq: int, endpoint: str | None
) -> dict[str, int]:
    assert _worker_decoder is not None
    segment = Segment(opened(path, endpoint), first_seq, last_seq)
    return decode_segment(opened(root, endpoint), segment, _worker_decoder)


def _task(root: Path, segment: Segment) -> tuple[str, str, int, int]:
    """A segment as a task is given it: plain strings, a store's URLs (never a credential)."""
    return task_path(root), task_path(segment.path), segment.first_seq, segment.last_seq


_task_decoders = threading.local()  # per worker thread: the spec and its Decoder


def decode_segment_task(
    root: str,
    path: str,
    first_seq: int,
    last_seq: int,
    spec: MessageSpec,
    endpoint: str | None,
) -> dict[str, int]:
    """Decode one segment on a cluster worker: plain strings in, rows per table out. Its
    Decoder is built once per worker thread and spec, as a pool worker builds its own. ``root``
    and ``path`` may be ``s3://`` URLs, opened at ``endpoint`` with the worker's own
    credentials."""
    cached = getattr(_task_decoders, "cached", None)
    if cached is None or cached[0] != spec:
        cached = _task_decoders.cached = (spec, Decoder(spec.load()))
    segment = Segment(opened(path, endpoint), first_seq, last_seq)
    return decode_segment(opened(root, endpoint), segment, cached[1])


@contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT held back from this thread, and so from a worker process started meanwhile, which
    inherits the mask: Ctrl-C reaches the whole process group, and a worker still importing
    (before ``_start_worker`` ignores SIGINT) would die of it with a traceback. Here it waits
    the few milliseconds of a start, then interrupts as usual; a worker never sees it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


Done = Callable[[Segment, dict[str, int] | None, BaseException | None], None]


def _decode_in_parallel(
    root: Path, pending: list[Segment], decoder: Decoder, spec: MessageSpec, jobs: int, done: Done
) -> None:
    """Decode ``pending`` on ``jobs`` cores: this process, which is started and warm, takes
    segments too (on a thread; the main thread only hands out work and counts), beside
    ``jobs - 1`` worker processes, each of which must first import the decoder. Each is handed
    one segment at a time, the next as soon as one is done, so none waits while another has
    several queued: the run ends within a segment of its share on every core."""
    queue = deque(pending)
    workers = min(jobs, len(pending)) - 1
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(spec,)
        ) as pool,
        ThreadPoolExecutor(1, thread_name_prefix="decode") as here,
    ):
        running: dict[Future[dict[str, int]], tuple[Segment, bool]] = {}

        def hand_out(in_pool: bool) -> None:
            if queue:
                segment = queue.popleft()
                if in_pool:
                    with _sigint_held():  # a worker may be started here
                        task = (*_task(root, segment), task_endpoint(root))
                        future = pool.submit(_decode_in_worker, *task)
                else:
                    future = here.submit(decode_segment, root, segment, decoder)
                running[future] = (segment, in_pool)

        try:
            for in_pool in [False] + [True] * workers:
                hand_out(in_pool)
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    segment, in_pool = running.pop(future)
                    error = future.exception()
                    if error is not None and not isinstance(error, OSError | pa.ArrowException):
                        raise error
                    done(segment, None if error else future.result(), error)
                    hand_out(in_pool)
        except BaseException:
            queue.clear()  # the segments being decoded are finished, no other is started
            pool.shutdown(cancel_futures=True)
            raise


def decode_archive(
    root: str | os.PathLike[str],
    spec: MessageSpec | None = None,
    *,
    jobs: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    cluster: Cluster | None = None,
) -> DecodeSummary:
    """Decode every raw segment of ``root`` that is new or was decoded by another version.

    ``jobs`` > 1 decodes that many segments at once, one in this process and one in each of
    ``jobs - 1`` worker processes; memory stays bounded by a few segments whatever the
    archive's size. ``cluster`` (a Dask scheduler's address, or a ``distributed.Client``)
    decodes each segment as a task on its workers instead, which must see the archive at the
    same path, or for ``s3://`` the same store, with credentials of their own.
    ``on_progress(done, total)`` counts the segments to decode, from (0, total) before the
    first.
    """
    layout = ArchiveLayout.open(root)
    if isinstance(layout.root, StorePath):
        superseded = layout.listing()[1]
        if superseded:
            raise ArchiveError(
                f"a compaction was interrupted ({superseded[0].path} lies inside a merged "
                f"segment); run 'replica compact {layout.root}' to finish it, then decode"
            )
        return _decode_archive(layout.root, spec, jobs, on_progress, cluster)
    with maintenance_lock(layout, "replica decode"):
        unfinished = layout.compaction_journals()
        if unfinished:
            raise ArchiveError(
                f"a compaction or heal was interrupted ({unfinished[0]} exists); "
                f"run 'replica compact {root}' to finish it, then decode"
            )
        return _decode_archive(layout.root, spec, jobs, on_progress, cluster)


def _decode_archive(
    root: Path,
    spec: MessageSpec | None,
    jobs: int,
    on_progress: Callable[[int, int], None] | None,
    cluster: Cluster | None,
) -> DecodeSummary:
    spec = spec or MessageSpec()
    decoder = Decoder(spec.load())
    remove_abandoned_temporaries(root)
    summary = DecodeSummary()
    summary.segments, pending = pending_segments(root, decoder.version)
    report = on_progress or (lambda done, total: None)
    report(0, len(pending))

    def done(segment: Segment, rows: dict[str, int] | None, error: BaseException | None) -> None:
        if error is not None:
            summary.failed.append(f"{segment.path}: {type(error).__name__}: {error}")
        else:
            summary.decoded += 1
            summary.rows.update(rows or {})
        report(summary.decoded + len(summary.failed), len(pending))

    if cluster is not None:
        # absolute: a worker elsewhere has its own working directory
        where = MessageSpec(spec.descriptor_set and Path(spec.descriptor_set).absolute(), spec.name)
        tasks = [(*_task(root, s), where, task_endpoint(root)) for s in pending]
        sizes = [s.last_seq - s.first_seq + 1 for s in pending]
        for i, rows, error in run_tasks(
            cluster, decode_segment_task, tasks, (OSError, pa.ArrowException), sizes
        ):
            done(pending[i], rows, error if isinstance(error, Exception) else None)
        remove_abandoned_temporaries(root, all_of_them=True)
        return summary
    if jobs <= 1 or len(pending) <= 1:
        for segment in pending:
            try:
                done(segment, decode_segment(root, segment, decoder), None)
            except (OSError, pa.ArrowException) as exc:
                done(segment, None, exc)
        return summary
    _decode_in_parallel(root, pending, decoder, spec, jobs, done)
    return summary
