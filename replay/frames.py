"""The Disk-Sync frames a replay sends, text for text as the feed documents them.

``command_frame`` is byte-identical on every run: keys in the feed's documented order, compact
separators, lowercase hex, integers as integers. The recorder stores exactly what these carry,
so a replayed archive recorded again holds the same commands.
"""

from __future__ import annotations

import json
import time

from replica.replay.records import ReplayRecord


def command_frame(record: ReplayRecord) -> str:
    return (
        f'{{"type":"replica_cmd","seq":{record.seq},"raw_hex":"{record.raw.hex()}",'
        f'"ts_ms":{record.ts_ms},"ingest_ts_us":{record.ingest_ts_us},'
        f'"publish_ts_us":{record.publish_ts_us}}}'
    )


def connected_frame() -> str:
    """The greeting after the upgrade; its ts_ms is the server's wall clock, as on the feed."""
    return json.dumps({"type": "connected", "feed": "disk-sync", "ts_ms": time.time_ns() // 10**6})
