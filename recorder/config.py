"""What a recording is asked to do (``RecorderConfig``) and the one line it reports
(``Summary``): checked when built, so a bad option fails before anything connects."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from replica.recorder.feedurl import check_url, public_url
from replica.recorder.policy import BackoffPolicy
from replica.recorder.units import SessionStats
from replica.schemas.errors import NothingRecorded, UsageError
from replica.schemas.storage import locate

MAX_ENDPOINTS = 255  # a spool record names its endpoint in one byte


@dataclass(frozen=True, kw_only=True)
class RecorderConfig:
    """``urls`` are the feed's endpoints, recorded at once (``url=`` is the same for one)."""

    urls: tuple[str, ...] = ()
    url: str = ""
    archive: str | os.PathLike[str]
    api_key: str | None = field(default=None, repr=False)
    auth: str = "header"  # or "query": the key goes in the URL, where proxies may log it
    segment_seconds: float = 60.0
    segment_rows: int = 500_000
    status_seconds: float = 5.0
    deadline: datetime | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    # How long to wait for the peer's close frame before dropping the connection: a dead peer
    # never sends one, and every second spent waiting is feed not recorded.
    close_timeout: float = 5.0
    # How long a command that arrived ahead of a missing seq waits for another endpoint to
    # deliver that seq before the seq is recorded as a gap (one endpoint never waits).
    gap_wait: float = 3.0
    arrivals: bool = True  # with several URLs, keep every delivery in the arrivals table
    # Recording to an object store: ``archive`` is then the local staging archive (spool and
    # sealed files until uploaded), ``store`` the s3:// URL they go to (``recorder.upload``).
    store: str | None = None
    endpoint_url: str | None = None
    upload_backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(initial=1.0, cap=10.0, jitter=1.0)
    )

    def __post_init__(self) -> None:
        if self.url and self.urls:
            raise UsageError("give the feed's URLs as urls= or one as url=, not both")
        urls = tuple(self.urls) or ((self.url,) if self.url else ())
        if not urls:
            raise UsageError("no feed URL to record")
        if len(urls) > MAX_ENDPOINTS:
            raise UsageError(f"at most {MAX_ENDPOINTS} URLs can be recorded at once")
        for url in urls:
            check_url(url)
        public = [public_url(url) for url in urls]
        repeated = next((url for url in public if public.count(url) > 1), None)
        if repeated is not None:
            raise UsageError(f"the URL {repeated} is given twice")
        object.__setattr__(self, "urls", urls)
        object.__setattr__(self, "url", urls[0])
        if not self.gap_wait >= 0:
            raise UsageError(f"gap_wait must not be negative, was {self.gap_wait}")
        if self.auth not in ("header", "query"):
            raise UsageError(f"auth {self.auth!r} is not one of 'header', 'query'")
        if self.auth == "query" and not self.api_key:
            raise UsageError("--auth query needs an API key to send")
        for name in ("segment_seconds", "segment_rows", "status_seconds"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name} must be positive, was {getattr(self, name)}")
        if self.store is not None:
            location = locate(self.store, self.endpoint_url)  # a bad URL fails here, not later
            if location.is_local:
                raise UsageError(f"store {self.store} is not a URL such as s3://bucket/prefix")
        if self.deadline is not None and self.deadline.tzinfo is None:
            raise UsageError("deadline must be timezone-aware")


@dataclass
class Summary:
    """The one JSON line a cron log keeps of a run."""

    archive: str
    source: str
    started: str
    ended: str
    ended_by: str
    exit_code: int
    frames: int
    appended: int
    first_seq: int | None
    last_seq: int | None
    duplicates: int
    conflicts: int
    quarantined: int
    gaps: int
    missing: int
    connections: int
    ts_back: int
    files_written: int
    recovered_frames: int
    error: str | None = None
    # Per endpoint: URL (without credentials), connections, commands delivered and won (archived
    # from it, being first), and how its last connection ended.
    endpoints: list[dict[str, object]] = field(default_factory=list)
    # Recording to a store: the sealed files still in the spool dir when the run ended.
    uploads_waiting: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


NO_KEY = "no API key set (REPLICA_API_KEY or --api-key-file): connecting to %s without one"


def nothing_recorded(stats: SessionStats, source: str) -> NothingRecorded | None:
    """A window that recorded nothing is a failure, however cleanly it ended: cron and
    systemd judge a day by the exit code."""
    if stats.appended:
        return None
    if not stats.connections:
        return NothingRecorded(
            f"the recording window ended without connecting to {source}: nothing recorded"
        )
    return NothingRecorded(
        f"the recording window ended with no new command from {source} "
        f"({stats.connections} connection(s)): nothing recorded"
    )
