"""``replica demo``: the whole recorder on a bundled feed, with no key and no network.

A local Disk-Sync server (with an API key it checks) streams the bundled ``demo_feed.jsonl``; the
recorder archives it; then the archive is verified, its gaps listed, its payloads decoded, a few
SQL queries run over its views, and a slice around the first gap replayed at ten times its pace.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

from websockets.http11 import Request

from replica.archive import open as replica_open
from replica.decoder.archive import decode_archive
from replica.maintenance.verify import GapRecord, read_gaps, verify
from replica.recorder.recorder import Recorder, RecorderConfig
from replica.replay.records import ReplayGap
from replica.replay.server import DiskSyncServer, Sink
from replica.results import table_text
from replica.schemas.errors import ReplicaError, UsageError
from replica.sql import connect

# Package data, so that the demo runs from any install; ``fixtures/make_feed.py`` regenerates it.
DEMO_FEED = Path(__file__).with_name("demo_feed.jsonl")
_PATIENCE_S = 120.0


def _fixture_frames() -> list[str]:
    return DEMO_FEED.read_text(encoding="utf-8").splitlines()


def _check_fresh(directory: Path) -> None:
    """Refuse a directory that holds anything: the demo would add its fixture commands to an
    archive found there, and its files to whatever else is."""
    try:
        held = sorted(entry.name for entry in directory.iterdir()) if directory.is_dir() else []
    except OSError as exc:
        raise UsageError(f"cannot list demo directory {directory}: {exc.strerror}") from None
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise UsageError(
            f"demo directory {directory} is not empty (it holds {shown}); "
            "give a new or empty directory"
        )


async def run_demo(directory: Path, say: Callable[[str], None]) -> None:
    """Run the demo into ``directory``, which must be missing or empty (UsageError)."""
    _check_fresh(directory)
    frames = _fixture_frames()
    last_seq = json.loads(frames[-1])["seq"]

    async def fixture_feed(_request: Request, _sink: Sink) -> AsyncGenerator[str, None]:
        for frame in frames:
            yield frame

    api_key = secrets.token_urlsafe(16)
    server = DiskSyncServer(fixture_feed, api_key=api_key)
    port = await server.start()
    url = f"ws://127.0.0.1:{port}"
    say(f"serving {len(frames)} fixture commands at {url} (x-api-key checked)")
    recorder = Recorder(
        RecorderConfig(url=url, archive=directory, api_key=api_key, status_seconds=1.0)
    )
    started = time.monotonic()
    run = asyncio.create_task(recorder.run())
    try:
        while not run.done() and recorder.last_seq != last_seq:
            if time.monotonic() - started > _PATIENCE_S:
                raise ReplicaError(f"the demo recorder did not reach seq {last_seq} in time")
            await asyncio.sleep(0.05)
        recorder.stop()
        summary = await run
    finally:
        await server.close()
    elapsed = time.monotonic() - started
    say(
        f"recorded {summary.appended} new commands in {elapsed:.1f} s into {directory}/raw "
        f"(seqs up to {summary.last_seq}; {summary.duplicates} duplicates already archived)"
    )
    _show_archive(directory, say)


def _show_archive(directory: Path, say: Callable[[str], None]) -> None:
    gaps = read_gaps(directory)
    for gap in gaps:
        say(f"gap: seqs {gap.from_seq}-{gap.to_seq} missing ({gap.missing}, cause {gap.cause})")
    report = verify(directory)
    say(
        f"verify: {report.segments} segments, {report.rows} commands, "
        f"{'ok' if report.ok else '; '.join(report.problems)}"
    )
    summary = decode_archive(directory)
    rows = ", ".join(f"{table} {n:,}" for table, n in sorted(summary.rows.items()))
    say(f"decode: {summary.decoded} segments into {directory}/decoded/<table>: {rows or 'no rows'}")
    with connect(directory) as db:
        for query in _QUERIES:
            say(f"sql: {query}")
            for line in table_text(db.sql(query)).splitlines():
                say("  " + line)
    _replay_slice(directory, gaps, say)
    say(
        f"files: {directory.resolve()}: raw/date=*/hour=*/*.parquet (the commands), "
        "gaps/, decoded/<table>/date=*/*.parquet; DuckDB reads them directly"
    )
    say(
        f'next: replica sql {directory} "SELECT * FROM completeness"; '
        f"replica stats {directory}; replica serve {directory} --port 8765; "
        f"replica duckdb {directory} {directory}.duckdb"
    )


_QUERIES = (
    "SELECT date, hour, count(*) AS commands, min(seq) AS first_seq, max(seq) AS last_seq, "
    "sum(octet_length(raw)) AS payload_bytes FROM raw_cmds GROUP BY ALL ORDER BY ALL",
    "SELECT * FROM completeness",
    "SELECT asset, count(*) AS fills, round(sum(px * sz), 2) AS notional, "
    "min(time_utc) AS first_fill FROM fills GROUP BY asset ORDER BY fills DESC, asset LIMIT 5",
)


def _replay_slice(directory: Path, gaps: list[GapRecord], say: Callable[[str], None]) -> None:
    """A few commands around the first gap (or from the start), at ten times their pace."""
    around = gaps[0].from_seq if gaps else 0
    from_seq, to_seq = max(around - 4, 0), around + 9
    say(f"replay: seqs {from_seq}-{to_seq} at speed 10, decoded")
    started = time.monotonic()
    for item in replica_open(directory).replay(
        from_seq=from_seq, to_seq=to_seq, speed=10, decode=True
    ):
        if isinstance(item, ReplayGap):
            say(f"  gap: seqs {item.from_seq}-{item.to_seq} missing")
            continue
        record = item.record
        tables = ", ".join(f"{table} {len(rows)}" for table, rows in sorted(item.rows.items()))
        say(
            f"  +{time.monotonic() - started:6.3f} s  seq {record.seq}  "
            f"ts_ms {record.ts_ms}  {len(record.raw)} B  -> {tables}"
        )
