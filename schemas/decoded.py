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
        pa.field("facts", pa.int32()),  # rows of fact tables the action gave
        pa.field("outer_idx", pa.int32()),  # an inner action (multiSig): its outer one's idx
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
        pa.field("raw_amount", pa.uint64()),  # an integer amount as written: usd, wei
        pa.field("to_perp", pa.bool_()),  # usdClassTransfer: spot to perp, or back
        pa.field("is_deposit", pa.bool_()),  # into the vault or subaccount, or out of it
        pa.field("subaccount", pa.string()),  # the subaccount or vault moved for or with
        pa.field("source_dex", pa.string()),  # sendAsset
        pa.field("destination_dex", pa.string()),
    ]
)

_FACT_KEYS = [
    *_KEYS,
    pa.field("kind", pa.string()),
    pa.field("block", pa.uint64()),
    pa.field("user", pa.string()),
]

# scheduleCancel: every open order of the user cancelled at a time, or (time null) that
# schedule removed.
SCHEDULED_CANCELS_SCHEMA = pa.schema([*_FACT_KEYS, pa.field("at_ms", pa.uint64())])

# twapOrder and twapCancel; the twap id of a new TWAP order comes from the response.
TWAPS_SCHEMA = pa.schema(
    [
        *_FACT_KEYS,
        pa.field("asset", pa.uint32()),
        pa.field("is_buy", pa.bool_()),
        pa.field("sz", pa.float64()),
        pa.field("reduce_only", pa.bool_()),
        pa.field("minutes", pa.uint32()),
        pa.field("randomize", pa.bool_()),
        pa.field("twap_id", pa.uint64()),
        pa.field("status", pa.string()),  # the response's: running, success, error
        pa.field("error", pa.string()),
    ]
)

# updateLeverage (is_cross, leverage) and updateIsolatedMargin (is_buy, amount_usd from the
# signed ntli in millionths: negative takes margin out).
MARGIN_SCHEMA = pa.schema(
    [
        *_FACT_KEYS,
        pa.field("asset", pa.uint32()),
        pa.field("is_cross", pa.bool_()),
        pa.field("leverage", pa.uint32()),
        pa.field("is_buy", pa.bool_()),
        pa.field("amount_usd", pa.float64()),
        pa.field("raw_amount", pa.int64()),
    ]
)

# evmRawTx: a raw HyperEVM transaction, by its size and Ethereum hash (keccak-256 of its bytes).
EVM_TXS_SCHEMA = pa.schema(
    [*_FACT_KEYS, pa.field("size", pa.int64()), pa.field("tx_hash", pa.string())]
)

UNDECODED_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("reason", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),  # payload bytes
    ]
)

# Columns that only node actions fill, added to the tables of the protobuf facts (null in rows
# from protobuf commands).
NODE_FACT_FIELDS = {
    "orders": [
        pa.field("replaces_oid", pa.uint64()),  # modify: the order replaced, by oid
        pa.field("replaces_cloid", pa.string()),  # or by cloid
        pa.field("status", pa.string()),  # the response's: resting, filled, error, ...
        pa.field("error", pa.string()),
        pa.field("filled_sz", pa.float64()),
        pa.field("avg_px", pa.float64()),
    ],
    "cancels": [
        pa.field("status", pa.string()),  # success, error
        pa.field("error", pa.string()),
    ],
    "oracle": [
        pa.field("source", pa.string()),  # the action's field the price came from
        pa.field("px_2", pa.float64()),  # the second element of a pxs pair
        pa.field("coin", pa.string()),  # prices given per coin name, not asset index
        pa.field("dex", pa.string()),  # perpDeploy setOracle: the HIP-3 dex
    ],
    "withdrawals": [
        pa.field("withdrawer", pa.string()),  # whose withdrawal (a validator vote's subject)
        pa.field("eth_tx_hash", pa.string()),  # VoteEthFinalizedWithdrawalAction
    ],
    "deposits": [
        pa.field("eth_block_number", pa.uint64()),  # the Ethereum event id (ethId)
        pa.field("eth_tx_index", pa.uint64()),
        pa.field("eth_event_type", pa.string()),
        pa.field("eth_event_index", pa.uint64()),
    ],
}

NODE_ONLY_SCHEMAS = {
    "blocks": BLOCKS_SCHEMA,
    "actions": ACTIONS_SCHEMA,
    "transfers": TRANSFERS_SCHEMA,
    "scheduled_cancels": SCHEDULED_CANCELS_SCHEMA,
    "twaps": TWAPS_SCHEMA,
    "margin": MARGIN_SCHEMA,
    "evm_txs": EVM_TXS_SCHEMA,
}


def decoded_path(root: Path, table: str, segment: Segment) -> Path:
    """Where ``table``'s rows from the raw ``segment`` go: same date partition, same name."""
    return root / DECODED_DIR / table / segment.partition[0] / segment.path.name


# Views over the decoded tables (``replica.sql`` defines them beside the tables' own views).
# Several validators vote for one Ethereum deposit, each vote a ``deposits`` row: summing the
# table counts a deposit once per vote. ``deposit_events`` is one row per deposit (per ethId, or
# per hash where a row has no ethId), with its votes and voting validators; ``disagree`` is true
# where the votes name more than one depositor or amount.
DEPOSIT_EVENTS_SQL = """\
SELECT min(date) AS date, min(time_ms) AS time_ms, eth_tx_hash, eth_block_number, eth_tx_index,
    eth_event_type, eth_event_index, any_value(depositor) AS depositor,
    any_value(amount_usd) AS amount_usd, count(*) AS votes,
    count(DISTINCT "user") AS validators,
    count(DISTINCT depositor) > 1 OR count(DISTINCT amount_usd) > 1 AS disagree
FROM deposits
GROUP BY eth_tx_hash, eth_block_number, eth_tx_index, eth_event_type, eth_event_index,
    CASE WHEN eth_tx_hash IS NULL THEN seq END, CASE WHEN eth_tx_hash IS NULL THEN idx END"""

# The same for withdrawals: validators sign (ValidatorSignWithdrawalAction) and then vote it
# finalized on Ethereum (VoteEthFinalizedWithdrawalAction), each a row per validator; a
# withdrawal is its user and nonce (withdraw3's ``time``). One row per withdrawal and stage.
WITHDRAWAL_EVENTS_SQL = """\
SELECT min(date) AS date, min(time_ms) AS time_ms, kind, withdrawer, nonce,
    any_value(destination) AS destination, any_value(amount_usd) AS amount_usd,
    any_value(eth_tx_hash) AS eth_tx_hash, count(*) AS votes,
    count(DISTINCT "user") AS validators,
    count(DISTINCT destination) > 1 OR count(DISTINCT amount_usd) > 1 AS disagree
FROM withdrawals
GROUP BY kind, withdrawer, nonce, CASE WHEN withdrawer IS NULL THEN seq END,
    CASE WHEN withdrawer IS NULL THEN idx END"""

# Per day and node action type: its actions, those that gave at least one fact row, and those
# with an undecoded row. A type the decoder has no fact for shows actions and no facts; a new
# type, or a changed shape, shows the next day.
ACTION_COVERAGE_SQL = """\
WITH a AS (
    SELECT date, kind, count(*) AS actions,
        count(*) FILTER (WHERE coalesce(facts, 0) > 0) AS with_facts
    FROM actions GROUP BY date, kind
), u AS (
    SELECT a.date, a.kind, count(*) AS undecoded
    FROM undecoded u JOIN actions a ON a.date = u.date AND a.seq = u.seq AND a.idx = u.idx
    GROUP BY a.date, a.kind
)
SELECT a.date, a.kind, a.actions, a.with_facts, coalesce(u.undecoded, 0) AS undecoded
FROM a LEFT JOIN u ON a.date = u.date AND a.kind IS NOT DISTINCT FROM u.kind
ORDER BY a.date, a.kind"""

# Each view, and the tables (with the columns it needs of them) it reads.
DECODED_VIEWS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "deposit_events": (DEPOSIT_EVENTS_SQL, {"deposits": ("eth_event_index",)}),
    "withdrawal_events": (WITHDRAWAL_EVENTS_SQL, {"withdrawals": ("withdrawer",)}),
    "action_coverage": (ACTION_COVERAGE_SQL, {"actions": ("facts",), "undecoded": ()}),
}
