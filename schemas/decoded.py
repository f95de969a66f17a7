"""Where decoded tables live, and the schemas of the tables no protobuf descriptor defines.

    ARCHIVE/decoded/<table>/date=YYYY-MM-DD/<first_seq>-<last_seq>.parquet
    ARCHIVE/decoded/_segments/date=YYYY-MM-DD/<first_seq>-<last_seq>.parquet

Each decoded file comes from the raw segment of the same name and date, so a query on one day
reads one day's files. ``_segments`` holds one small file per decoded raw segment, written after
that segment's tables: its rows say how many rows each table got (tables with none have no file),
and its metadata which decoder wrote them from which raw file (keys in ``schemas.metadata``);
every decoded file carries the same metadata.

The tables that protobuf facts go to (orders, fills, ...) get their columns from the message
descriptors (see ``decoder.protobuf``); the ones below exist only for the node's JSON blocks, or
for payloads that did not decode.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from replica.schemas.archive import Segment

DECODED_DIR = "decoded"
SEGMENTS_TABLE = "_segments"

DECODED_ZSTD_LEVEL = 3

SEGMENTS_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
    ]
)

_KEYS = [
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("idx", pa.int32(), nullable=False),
    pa.field("time_ms", pa.int64(), nullable=False),
]

BLOCKS_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("block", pa.uint64()),  # the block's round
        pa.field("time_ns", pa.int64()),  # the block time at the node's nanosecond precision
        pa.field("parent_round", pa.uint64()),
        pa.field("proposer", pa.string()),
        pa.field("hardfork", pa.string()),  # JSON text
        pa.field("bundles", pa.int32()),
        pa.field("actions", pa.int32()),
        pa.field("has_responses", pa.bool_()),
    ]
)

ACTIONS_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("kind", pa.string()),  # the action's "type"
        pa.field("block", pa.uint64()),
        pa.field("bundle_hash", pa.string()),
        pa.field("broadcaster", pa.string()),
        pa.field("broadcaster_nonce", pa.uint64()),
        pa.field("nonce", pa.uint64()),
        pa.field("vault", pa.string()),
        pa.field("expires_after", pa.uint64()),
        pa.field("user", pa.string()),
        pa.field("status", pa.string()),  # "ok" or "err"; null without responses
        pa.field("response", pa.string()),  # JSON text
        pa.field("action", pa.string()),  # JSON text, the whole action
    ]
)

# Transfers between accounts exist only as node actions (usdSend, spotSend, ...).
TRANSFERS_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("kind", pa.string()),
        pa.field("block", pa.uint64()),
        pa.field("user", pa.string()),
        pa.field("destination", pa.string()),
        pa.field("token", pa.string()),
        pa.field("amount", pa.float64()),
        pa.field("nonce", pa.uint64()),
    ]
)

UNDECODED_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("reason", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),  # payload bytes
    ]
)

NODE_ONLY_SCHEMAS = {
    "blocks": BLOCKS_SCHEMA,
    "actions": ACTIONS_SCHEMA,
    "transfers": TRANSFERS_SCHEMA,
}


def decoded_path(root: Path, table: str, segment: Segment) -> Path:
    """Where ``table``'s rows from the raw ``segment`` go: same date partition, same name."""
    return root / DECODED_DIR / table / segment.partition[0] / segment.path.name
