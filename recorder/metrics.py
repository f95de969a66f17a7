"""Prometheus metrics of ``replica record`` (``--metrics-port``), for operators' dashboards and
alerts. Names start ``replica_record_``, beside ``replica serve``'s ``replica_serve_``.

Nothing is counted twice: a scrape reads the counters the recorder keeps anyway for its status
line and JSON summary (so the two always agree), and the feed lag histogram is filled at each
maintenance (every 50 ms) from the rows appended since, never per frame. Only the lag adds work
to a recording, and only when metrics are asked for.

``prometheus-client`` (the ``replica[metrics]`` extra) is imported only when a registry is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from replica.recorder.recorder import Recorder
from replica.recorder.session import FeedSession
from replica.schemas.metrics import LatencyCounts, expose, new_registry

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

# Feed lag buckets, in seconds: the feed publishes within milliseconds; seconds mean trouble.
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Relay latency buckets, in seconds: the relay's budget is 2 ms (issue 15); tens of ms is a
# client's buffer or the machine's CPU behind.
RELAY_LATENCY_BUCKETS_S = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


def _nothing() -> int:
    return 0


class FeedLag:
    """Histogram counts (``counts``) of each archived command's ``recv_ts_us -
    publish_ts_us`` (negative, a clock ahead of ours, counts as 0), from the columns of the
    units it is appended to: ``observe`` runs on the event loop, a scrape reads ``counts``."""

    def __init__(self) -> None:
        self.counts = LatencyCounts(LAG_BUCKETS_S)
        self._unit_id: str | None = None  # the unit observed last, and its rows observed
        self._rows = 0

    def observe(self, session: FeedSession) -> None:
        """Count the rows appended since the last call: those of the units sealed meanwhile
        (still in ``session.sealed``) and of the open unit."""
        units = [*session.sealed, session.open_unit]
        ids = [unit.unit_id for unit in units]
        start, offset = (ids.index(self._unit_id), self._rows) if self._unit_id in ids else (0, 0)
        for unit in units[start:]:
            self.counts.count(
                recv_us - publish_us
                for recv_us, publish_us in zip(
                    unit.recv_ts_us[offset:], unit.publish_ts_us[offset:], strict=True
                )
            )
            offset = 0
        self._unit_id, self._rows = units[-1].unit_id, len(units[-1].recv_ts_us)


class RecorderMetrics:
    """A collector over one ``Recorder``: register it, then ``expose`` it.

    ``relay_clients`` and ``relay_backlog`` report a relay of the recording to local clients,
    when one is composed with it: callables that its composer sets (0 without one), and
    ``relay_latency`` the counts its composer hands the relay to fill (each live command's time
    from the recorder's receipt to its send to a client, per client)."""

    def __init__(self, recorder: Recorder) -> None:
        self.registry: CollectorRegistry = new_registry()
        self.relay_clients: Callable[[], int] = _nothing
        self.relay_backlog: Callable[[], int] = _nothing
        self.relay_latency = LatencyCounts(RELAY_LATENCY_BUCKETS_S)
        self._recorder = recorder
        self._lag = FeedLag()
        recorder.on_maintenance = self._lag.observe
        self.registry.register(self)

    def expose(self, host: str, port: int) -> None:
        """Serves ``/metrics`` over HTTP on a daemon thread."""
        expose(self.registry, host, port)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        recorder = self._recorder
        summary = recorder.summary()
        session, writers = recorder.session, recorder.writers

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"replica_record_{name}", text, value=value)

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"replica_record_{name}", text, value=value)

        yield counter("frames_received", "Frames received from every endpoint.", summary.frames)
        yield counter("commands_archived", "Commands archived (each seq once).", summary.appended)
        yield counter(
            "duplicates", "Commands whose seq was already archived or held.", summary.duplicates
        )
        yield counter(
            "conflicts", "Duplicates whose payload differed (quarantined).", summary.conflicts
        )
        yield counter("gaps", "Gap records: runs of seqs no endpoint delivered.", summary.gaps)
        yield counter("missing_seqs", "Seqs in gap records.", summary.missing)
        yield counter(
            "files_written", "Archive files written (recovery's included).", summary.files_written
        )
        yield counter(
            "segments_sealed",
            "Units sealed and published: each a raw segment and its gaps, quarantine, ...",
            writers.units_written if writers else 0,
        )
        yield gauge(
            "last_seq",
            "The last seq archived (-1: none yet).",
            -1 if summary.last_seq is None else summary.last_seq,
        )
        yield gauge(
            "spool_backlog_writes",
            "Spool writes (each up to 50 ms of frames) not yet on disk.",
            writers.spool_backlog if writers else 0,
        )
        yield gauge(
            "writer_backlog_segments",
            "Sealed units waiting to be written to the archive.",
            writers.backlog if writers else 0,
        )
        yield gauge(
            "writer_backlog_bytes",
            "Memory held by sealed units waiting to be written.",
            writers.backlog_bytes if writers else 0,
        )
        kinds = CounterMetricFamily(
            "replica_record_quarantined", "Frames quarantined, by kind.", labels=["kind"]
        )
        for kind, count in sorted((session.stats.quarantined_kinds if session else {}).items()):
            kinds.add_metric([kind], count)
        yield kinds
        yield from self._endpoints(session)
        buckets, sum_s = self._lag.counts.snapshot()
        bounds = [*map(str, LAG_BUCKETS_S), "+Inf"]
        yield HistogramMetricFamily(
            "replica_record_feed_lag_seconds",
            "Seconds from a command's publish_ts_us (the feed's clock) to its receipt here.",
            buckets=list(zip(bounds, buckets, strict=True)),
            sum_value=sum_s,
        )
        yield gauge("relay_clients", "Clients of the recording's relay.", self.relay_clients())
        yield gauge(
            "relay_backlog_frames",
            "Commands waiting in the relay clients' send buffers, all together.",
            self.relay_backlog(),
        )
        buckets, sum_s = self.relay_latency.snapshot()
        bounds = [*map(str, RELAY_LATENCY_BUCKETS_S), "+Inf"]
        yield HistogramMetricFamily(
            "replica_record_relay_latency_seconds",
            "Seconds from a command's receipt here (recv_ts_us) to its send to a relay client, "
            "once per client it is sent to live.",
            buckets=list(zip(bounds, buckets, strict=True)),
            sum_value=sum_s,
        )

    def _endpoints(self, session: FeedSession | None) -> Iterator[Metric]:
        """Per endpoint (its URL without credentials), once the run has its session."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        prefix, label = "replica_record_endpoint_", ["endpoint"]
        received, won, connections, reconnects = (
            CounterMetricFamily(f"{prefix}{name}", text, labels=label)
            for name, text in (
                ("commands_received", "Commands this endpoint delivered."),
                ("commands_won", "Commands archived from it, being first."),
                ("connections", "Connections opened to it."),
                ("reconnects", "Connections opened to it after its first."),
            )
        )
        up = GaugeMetricFamily(f"{prefix}up", "1 while its connection is open.", labels=label)
        totals = session.totals if session else []
        for endpoint, is_up in zip(totals, self._recorder.endpoints_up, strict=False):
            name = [endpoint.endpoint]
            received.add_metric(name, endpoint.delivered)
            won.add_metric(name, endpoint.won)
            connections.add_metric(name, endpoint.connections)
            reconnects.add_metric(name, max(0, endpoint.connections - 1))
            up.add_metric(name, int(is_up))
        yield from (received, won, connections, reconnects, up)
