"""A real Dask cluster for the tests: two worker processes on loopback, no dashboard."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import distributed

GUARD_S = 300  # against a hang, not a measure


@contextlib.contextmanager
def local_cluster(workers: int = 2) -> Iterator[distributed.Client]:
    """A client of a ``LocalCluster`` of ``workers`` processes, once they are all up. The
    workers inherit this process's environment as it is when they start."""
    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            worker_dashboard_address=None,
            # its HTTP server (health, metrics) runs even so: on a free port, not 8787
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as local,
        distributed.Client(local, set_as_default=False) as client,
    ):
        client.wait_for_workers(workers, timeout=GUARD_S)
        yield client


def killing_a_worker(client: distributed.Client) -> tuple[Callable[[int, int], None], list[int]]:
    """An ``on_progress`` that SIGKILLs one worker process once the first task is done (the
    others queued or running), and the pids it killed."""
    pids = list(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_one(done: int, total: int) -> None:
        if done == 1 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    return kill_one, killed
