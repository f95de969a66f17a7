"""Running one task per unit of work (a segment, a file) on a Dask distributed cluster.

A backfill too large for one machine runs as tasks on the workers of a ``dask.distributed``
cluster, which read and write the same archive (a shared filesystem, or the same object store,
whose endpoint a task carries and whose credentials each worker takes from its own AWS chain:
``storepath.task_path`` and ``opened``). The tasks are the same
functions the local process pool runs, each taking plain paths and strings, and each one
idempotent: a worker killed mid-task leaves only temporary files, and the scheduler runs the task
again on another worker. The client keeps what needs every unit at once (progress, the summary,
the checks across units).

``distributed`` is imported only here, and only when a cluster is asked for: it is the
``replica[cluster]`` extra, not a dependency.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from replica.schemas.errors import ArchiveError, UsageError

# A scheduler address ("tcp://host:8786") or a ``distributed.Client`` already connected.
Cluster = Any

_CONNECT_TIMEOUT = "20s"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(
            "--cluster needs dask.distributed: pip install 'replica[cluster]'"
        ) from None
    return distributed


@contextmanager
def connected(cluster: Cluster) -> Iterator[Any]:
    """A client of ``cluster``: a new one for an address, closed after; a client given as is."""
    if not isinstance(cluster, str):
        yield cluster
        return
    distributed = _distributed()
    try:  # before a Client, which would be left half made
        distributed.comm.get_address_host_port(cluster)
    except ValueError as exc:
        raise UsageError(
            f"--cluster {cluster}: not a scheduler address like tcp://HOST:8786 ({exc})"
        ) from None
    try:
        client = distributed.Client(cluster, timeout=_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot reach the cluster scheduler {cluster}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


def run_tasks(
    cluster: Cluster,
    function: Callable[..., Any],
    arguments: Sequence[tuple[Any, ...]],
    expected: tuple[type[BaseException], ...],
    sizes: Sequence[int] | None = None,
) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Run ``function(*arguments[i])`` for each i on the cluster, yielding (i, result, None) or
    (i, None, error) as each finishes, for an error of the ``expected`` types; any other error
    is raised. Leaving early (an error, Ctrl-C) cancels the tasks not yet finished: those
    running finish or leave temporaries, which the next run removes.

    ``sizes[i]`` (task i's work, e.g. its rows) makes the largest tasks start first, so that a
    run does not end with one worker busy on a large task while the others idle: in archive
    order, an hour's full segment can come last, after the small ones, and the run takes as
    long as that one task after all the rest."""
    order = sorted(range(len(arguments)), key=lambda i: -sizes[i]) if sizes else None
    with connected(cluster) as client:
        distributed = _distributed()
        run = uuid.uuid4().hex
        futures = {
            i: client.submit(
                function,
                *arguments[i],
                key=f"{function.__name__}-{run}-{i}",
                priority=len(arguments) - rank,  # Dask runs the highest first
            )
            for rank, i in enumerate(order or range(len(arguments)))
        }
        index = {future.key: i for i, future in futures.items()}
        try:
            for future in distributed.as_completed(list(futures.values()), loop=client.loop):
                if future.status == "error":
                    error = future.exception()
                    if isinstance(error, distributed.KilledWorker):
                        raise ArchiveError(
                            f"the workers running task {index[future.key]} of {function.__name__}"
                            " died each time (out of memory?); what the other tasks wrote is "
                            "kept, and running the command again goes on from there"
                        ) from None
                    if not isinstance(error, expected):
                        raise error
                    yield index[future.key], None, error
                else:
                    yield index[future.key], future.result(), None
        finally:
            client.cancel([future for future in futures.values() if not future.done()])
