"""What every ``--metrics-port`` shares: a registry of its own, and ``/metrics`` over HTTP.

``prometheus-client`` is the ``replica[metrics]`` extra, imported only when metrics are asked
for: a missing one is a usage error naming the extra, never a traceback. Each stage builds its
own ``replica_<stage>_`` metrics on the registry given here (``replay`` for ``serve``,
``recorder`` for ``record``), so a process that runs both exposes them in one scrape.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate
from typing import TYPE_CHECKING

from replica.schemas.errors import UsageError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def new_registry() -> CollectorRegistry:
    """A registry for one process's metrics; ``UsageError`` without prometheus-client."""
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        raise UsageError(
            "--metrics-port needs prometheus-client: pip install 'replica[metrics]'"
        ) from None
    return CollectorRegistry()


def expose(registry: CollectorRegistry, host: str, port: int) -> None:
    """Serves ``registry`` at ``http://host:port/metrics`` on a daemon thread."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None


class LatencyCounts:
    """A histogram of latencies in fixed buckets, cheap enough for a hot path: a batch of
    commands is counted at once against one clock reading (``observe``, on the event loop),
    and a scrape's thread reads cumulative counts (``snapshot``). A lock keeps the counts and
    the sum of one batch together."""

    def __init__(self, bounds_s: tuple[float, ...]) -> None:
        self.bounds_s = bounds_s
        self._bounds_us = [round(bound * 1e6) for bound in bounds_s]
        self._counts = [0] * (len(bounds_s) + 1)
        self._sum_us = 0
        self._lock = threading.Lock()

    def observe(self, since_us: Iterable[int], now_us: int) -> None:
        """Counts ``now_us - t`` for each ``t`` (a negative one, a clock stepped back, as 0)."""
        self.count(now_us - then for then in since_us)

    def count(self, latencies_us: Iterable[int]) -> None:
        """Counts each latency (a negative one, a clock stepped back or ahead, as 0)."""
        bounds, counts, total = self._bounds_us, [0] * len(self._counts), 0
        for latency in latencies_us:
            if latency < 0:
                latency = 0
            counts[bisect_left(bounds, latency)] += 1
            total += latency
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
            self._sum_us += total

    def snapshot(self) -> tuple[list[int], float]:
        """Cumulative counts per bucket (the last is +Inf), and the sum in seconds."""
        with self._lock:
            counts, sum_us = self._counts, self._sum_us
        return list(accumulate(counts)), sum_us / 1e6
