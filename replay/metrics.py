"""Prometheus metrics of ``replica serve`` (``--metrics-port``), for operators' dashboards and
alerts. Names start ``replica_serve_`` so that other processes (the recorder) can add their own
``replica_<stage>_`` metrics beside them in one scrape config.

``prometheus-client`` is the ``replica[metrics]`` extra: imported only when metrics are asked
for (``schemas/metrics.py``). Each server has its own registry, so nothing is shared between
servers in one process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from replica.schemas.metrics import expose, new_registry

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# Follow lag buckets, in seconds: a poll interval is 0.2 s and a segment seals in seconds.
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry: CollectorRegistry = new_registry()
        from prometheus_client import Counter, Gauge, Histogram

        registry = self.registry
        self.clients = Gauge(
            "replica_serve_clients_connected", "Clients connected now.", registry=registry
        )
        self.frames = Counter(
            "replica_serve_frames_sent",
            "Frames sent to clients (replica_cmd and connected).",
            registry=registry,
        )
        self.bytes = Counter(
            "replica_serve_bytes_sent", "Bytes of frame text sent to clients.", registry=registry
        )
        self.slow_closes = Counter(
            "replica_serve_slow_client_closes",
            "Clients closed with 1013 because they could not keep up.",
            registry=registry,
        )
        self.backlog = Gauge(
            "replica_serve_client_backlog_frames",
            "Live commands waiting in a following client's bounded buffer.",
            ["client"],
            registry=registry,
        )
        self.lag = Histogram(
            "replica_serve_follow_lag_seconds",
            "Seconds from a followed command's recv_ts_us to its hand-off to the client socket.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )

    def sent(self, frame: str) -> None:
        self.sent_texts(1, len(frame.encode()))

    def sent_texts(self, count: int, size: int) -> None:
        """``count`` frames of ``size`` bytes of text in all."""
        self.frames.inc(count)
        self.bytes.inc(size)

    def follow_lag(self, recv_ts_us: int) -> None:
        self.lag.observe(max(0.0, time.time() - recv_ts_us / 1e6))

    def watch_backlog(self, client: str, size: Callable[[], int]) -> None:
        self.backlog.labels(client=client).set_function(size)

    def forget_backlog(self, client: str) -> None:
        with contextlib.suppress(KeyError):
            self.backlog.remove(client)

    def expose(self, host: str, port: int) -> None:
        """Serves ``/metrics`` over HTTP on a daemon thread."""
        expose(self.registry, host, port)
