"""``replica demo``: the whole recorder on a bundled feed, with no key and no network.

A local Disk-Sync server (with an API key it checks) streams ``fixtures/feed.jsonl``; the
recorder archives it; then the archive is verified, its gaps listed and queried with DuckDB.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import duckdb

from recorder.recorder import Recorder, RecorderConfig
from recorder.verify import read_gaps, verify
from replay.server import DiskSyncServer
from schemas.errors import ReplicaError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "feed.jsonl"
_PATIENCE_S = 120.0


def _fixture_frames() -> list[str]:
    if not FIXTURE.is_file():
        raise ReplicaError(
            f"the demo feed {FIXTURE} is missing; run the demo from a source checkout "
            "installed with 'pip install -e .'"
        )
    return FIXTURE.read_text(encoding="utf-8").splitlines()


async def run_demo(directory: Path, say: Callable[[str], None]) -> None:
    frames = _fixture_frames()
    last_seq = json.loads(frames[-1])["seq"]

    async def fixture_feed(_request) -> AsyncIterator[str]:
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
    for gap in read_gaps(directory):
        say(f"gap: seqs {gap.from_seq}-{gap.to_seq} missing ({gap.missing}, cause {gap.cause})")
    report = verify(directory)
    say(
        f"verify: {report.segments} segments, {report.rows} commands, "
        f"{'ok' if report.ok else '; '.join(report.problems)}"
    )
    glob = f"{directory}/raw/**/*.parquet"
    query = (
        "SELECT date, hour, count(*) AS commands, min(seq) AS first_seq, max(seq) AS last_seq, "
        f"sum(octet_length(raw)) AS payload_bytes FROM read_parquet('{glob}', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
    )
    say(f"duckdb: {query}")
    for row in duckdb.sql(query).fetchall():
        say("  " + "  ".join(str(value) for value in row))
    say(
        f"next: replica verify {directory}; replica gaps {directory}; "
        f"duckdb -c \"SELECT count(*) FROM '{glob}'\""
    )
