"""Reading one Disk-Sync frame: a command, the ``connected`` greeting, or a reason it is bad.

Pure functions of the frame text. Anything that is not exactly what the feed documents raises
``BadFrame`` with a short ``kind`` (for grouping in SQL) and a one-line ``reason``.
"""

from __future__ import annotations

import binascii
import json
from typing import NamedTuple

from schemas.archive import MAX_TS_MS

INT64_MAX = 2**63 - 1
_COMMAND_INTS = ("seq", "ts_ms", "ingest_ts_us", "publish_ts_us")


class BadFrame(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Command(NamedTuple):
    seq: int
    ts_ms: int
    ingest_ts_us: int
    publish_ts_us: int
    raw: bytes


class Connected(NamedTuple):
    feed: str
    ts_ms: int


def parse_frame(frame: str | bytes) -> Command | Connected:
    if not isinstance(frame, str):
        raise BadFrame("binary", f"binary frame of {len(frame)} bytes; the feed sends JSON text")
    try:
        msg = json.loads(frame)
    except ValueError as exc:
        raise BadFrame("not_json", f"not JSON: {exc}") from None
    except RecursionError:
        raise BadFrame("not_json", "JSON nested too deeply to parse") from None
    if type(msg) is not dict:
        raise BadFrame("not_object", f"a JSON {type(msg).__name__}, not an object")
    kind = msg.get("type")
    if kind == "replica_cmd":
        return _command(msg)
    if kind == "connected":
        feed, ts_ms = msg.get("feed"), msg.get("ts_ms")
        if type(feed) is not str or type(ts_ms) is not int:
            raise BadFrame("bad_field", "connected frame needs a string feed and an integer ts_ms")
        return Connected(feed, ts_ms)
    if kind is None:
        raise BadFrame("missing_field", "frame has no 'type'")
    raise BadFrame("unknown_type", f"unknown frame type {kind!r}")


def _command(msg: dict) -> Command:
    try:
        seq, raw_hex = msg["seq"], msg["raw_hex"]
        ts_ms, ingest, publish = msg["ts_ms"], msg["ingest_ts_us"], msg["publish_ts_us"]
    except KeyError as exc:
        raise BadFrame("missing_field", f"replica_cmd has no {exc.args[0]!r}") from None
    if not (
        type(seq) is int
        and type(ts_ms) is int
        and type(ingest) is int
        and type(publish) is int
        and 0 <= seq <= INT64_MAX
        and 0 <= ts_ms <= MAX_TS_MS
        and 0 <= ingest <= INT64_MAX
        and 0 <= publish <= INT64_MAX
    ):
        raise _bad_int(msg)
    if type(raw_hex) is not str:
        raise BadFrame("bad_field", f"raw_hex is a {type(raw_hex).__name__}, not a string")
    try:
        raw = binascii.unhexlify(raw_hex)
    except (binascii.Error, ValueError):
        raise _bad_hex(raw_hex) from None
    return Command(seq, ts_ms, ingest, publish, raw)


def _bad_int(msg: dict) -> BadFrame:
    for name in _COMMAND_INTS:
        value = msg[name]
        if type(value) is not int:
            return BadFrame("bad_field", f"{name} is {json.dumps(value)[:40]}, not an integer")
        limit = MAX_TS_MS if name == "ts_ms" else INT64_MAX
        if not 0 <= value <= limit:
            return BadFrame("out_of_range", f"{name} {value} is outside 0..{limit}")
    raise AssertionError("called only for a frame with a bad integer")


def _bad_hex(raw_hex: str) -> BadFrame:
    if len(raw_hex) % 2:
        return BadFrame("bad_hex", f"raw_hex has an odd length ({len(raw_hex)})")
    bad = next(ch for ch in raw_hex if ch not in "0123456789abcdefABCDEF")
    return BadFrame("bad_hex", f"raw_hex has a non-hex character {bad!r}")
