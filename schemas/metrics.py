"""What every ``--metrics-port`` shares: a registry of its own, and ``/metrics`` over HTTP.

``prometheus-client`` is the ``replica[metrics]`` extra, imported only when metrics are asked
for: a missing one is a usage error naming the extra, never a traceback. Each stage builds its
own ``replica_<stage>_`` metrics on the registry given here (``replay`` for ``serve``,
``recorder`` for ``record``), so a process that runs both exposes them in one scrape.
"""

from __future__ import annotations

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
