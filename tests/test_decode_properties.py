"""Properties of the payload decoder over generated inputs (hypothesis).

- Any byte string decodes or becomes an ``undecoded`` row with a reason: ``decode`` never raises
  and never drops a payload; the same for bytes that start with ``{`` and for JSON text, which
  take the node block path, and for mutations of realistic payloads from ``fixtures.make_feed``.
- A ``ReplicaCommand`` built from the generated classes decodes to rows equal to its fields.
- Decoding is deterministic, and batching does not change a payload's rows.

Explicit ``@example``s hold inputs that an earlier decoder failed on and that random
generation rarely finds (see the constants below), so each run tries them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from replica.decoder.core import Decoder
from replica.schemas.decoded import NODE_FACT_FIELDS
from replica.schemas.frames import MAX_TS_MS
from replica.schemas.hyperliquid.replica.v1 import replica_pb2 as pb

from fixtures.make_feed import START_TS_MS, node_block, protobuf_command
from replica.demo import DEMO_FEED

REPO = Path(__file__).resolve().parents[1]
DECODER = Decoder()
SCHEMAS = DECODER.schemas
FIRST_SEQ = 7_000
FIRST_TS_MS = 1_750_733_800_000

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Rows = dict[str, list[dict[str, Any]]]  # rows by table

# --- inputs an earlier decoder failed on -------------------------------------------------------

BLOCK_TIME = "2025-06-24T02:56:36.172847427"
BUNDLE_HASH = "0x" + "ab" * 32


def _block_doc(*actions: dict[str, Any]) -> dict[str, Any]:
    signed = [
        {"action": action, "nonce": 1_750_733_795_000 + i} for i, action in enumerate(actions)
    ]
    bundle = {"signed_actions": signed, "broadcaster": "0x" + "11" * 20, "broadcaster_nonce": 1}
    block = {"time": BLOCK_TIME, "round": 7, "signed_action_bundles": [[BUNDLE_HASH, bundle]]}
    return {"abci_block": block, "resps": None}


# Bytes that are not UTF-8 inside a string of a node block (here the block time) give an
# undecoded row ("not JSON: Invalid UTF-8 ..."), not a UnicodeDecodeError out of
# ``Decoder.decode``. One flipped byte in a recorded block is enough.
NOT_UTF8_JSON = b'{"abci_block":{"time":"\xff","signed_action_bundles":[]},"resps":null}'

# JSON nested deeper than the interpreter's recursion limit gives an undecoded row ("nested too
# deeply"), not msgspec's RecursionError out of ``Decoder.decode``.
DEEPLY_NESTED_JSON = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"

# An integer of 2**64 or more where the node writes an unsigned 64-bit number (a block's round,
# a nonce, a cancel's oid) is refused by the decoder's checks, so it never reaches a uint64
# column (where it would raise OverflowError): the block (for a round) or the action (for a nonce
# or an oid) becomes an undecoded row.
ROUND_BEYOND_U64_BLOCK = _block_doc({"type": "noop"})
ROUND_BEYOND_U64_BLOCK["abci_block"]["round"] = 2**64
CANCEL_OID_BEYOND_U64 = {"type": "cancel", "cancels": [{"a": 1, "o": 2**64}]}

# An integer beyond float range (309+ digits) as a price must give an undecoded action, not an
# OverflowError from ``float()`` (which an earlier version of the decoder raised).
HUGE_INTEGER_PRICE_BLOCK = _block_doc(
    {
        "type": "order",
        "orders": [
            {"a": 0, "b": True, "p": 10**400, "s": "1", "r": False, "t": {"limit": {"tif": "Gtc"}}}
        ],
        "grouping": "na",
    },
    {"type": "noop"},
)


# --- checking one batch ------------------------------------------------------------------------


def _batch_keys(n: int) -> tuple[list[int], list[int]]:
    return list(range(FIRST_SEQ, FIRST_SEQ + n)), [FIRST_TS_MS + 10 * i for i in range(n)]


def decode_or_fail(
    seqs: list[int], ts_ms: list[int], payloads: list[bytes], decoder: Decoder = DECODER
) -> dict[str, pa.Table]:
    try:
        return decoder.decode(seqs, ts_ms, payloads)
    except Exception as exc:
        shown = [p[:300] + (b"..." if len(p) > 300 else b"") for p in payloads]
        pytest.fail(
            f"Decoder.decode raised {type(exc).__name__}: {exc}; every payload must decode or "
            f"become an undecoded row. Payloads (at most 300 bytes of each): {shown!r}"
        )


def decode_checked(payloads: list[bytes]) -> Rows:
    """Decode ``payloads`` as one batch, check what holds for any input, and return the rows."""
    seqs, ts_ms = _batch_keys(len(payloads))
    tables = decode_or_fail(seqs, ts_ms, payloads)
    rows: Rows = {}
    for name, table in tables.items():
        assert name in SCHEMAS, f"unknown table {name}"
        assert table.schema.equals(SCHEMAS[name]), f"table {name}:\n{table.schema}"
        assert table.num_rows > 0, f"table {name} is returned with no rows"
        rows[name] = table.to_pylist()
        keys = [(row["seq"], row["idx"]) for row in rows[name]]
        assert keys == sorted(set(keys)), f"table {name}: (seq, idx) not unique and ascending"
    by_seq: dict[int, Rows] = {seq: {} for seq in seqs}
    for name, table_rows in rows.items():
        for row in table_rows:
            assert row["seq"] in by_seq, f"table {name}: a row for seq {row['seq']}, not given"
            by_seq[row["seq"]].setdefault(name, []).append(row)
    for payload, seq, ts in zip(payloads, seqs, ts_ms, strict=True):
        _check_payload_rows(payload, ts, by_seq[seq])
    return rows


def _check_payload_rows(payload: bytes, ts_ms: int, found: Rows) -> None:
    where = f"payload {payload[:120]!r}"
    assert found, f"{where}: no row in any table (a dropped payload)"
    for row in found.get("undecoded", []):
        assert isinstance(row["reason"], str) and row["reason"].strip(), f"{where}: no reason"
        assert row["size"] == len(payload), f"{where}: undecoded size {row['size']}"
    if "blocks" in found:  # a node block: every signed action has its actions row, always
        assert payload[:1] == b"{", f"{where}: a block row for a payload not starting with {{"
        (block,) = found["blocks"]
        rows = found.get("actions", [])
        actions = {row["idx"]: row["kind"] for row in rows}
        top = sorted(row["idx"] for row in rows if row["outer_idx"] is None)
        undecoded = {row["idx"]: row["reason"] for row in found.get("undecoded", [])}
        assert len(actions) == len(rows), f"{where}: an action twice"
        assert len(undecoded) == len(found.get("undecoded", [])), f"{where}: undecoded twice"
        assert top == list(range(block["actions"])), (
            f"{where}: the block's {block['actions']} actions have top-level rows {top}"
        )
        for row in rows:
            if row["outer_idx"] is not None:  # an inner action, after the top-level ones
                assert row["idx"] >= block["actions"] and row["outer_idx"] in actions, row
        assert undecoded.keys() <= actions.keys(), f"{where}: {sorted(undecoded)} {sorted(actions)}"
        for idx, reason in undecoded.items():
            # the reason names the action and its kind
            kind = actions[idx] if actions[idx] is not None else "(no type)"
            assert reason.startswith(f"node action {idx}: {kind}: "), (idx, reason)
    elif "undecoded" in found:  # the whole payload is undecoded: one row, nothing else
        assert list(found) == ["undecoded"], f"{where}: undecoded and also in {list(found)}"
        (row,) = found["undecoded"]
        assert (row["idx"], row["time_ms"]) == (0, ts_ms), row
    else:  # a protobuf command: one kind of fact, in one table
        assert payload[:1] != b"{", f"{where}: facts but no block row for a JSON payload"
        assert len(found) == 1, f"{where}: one command fills {list(found)}"
        (table_rows,) = found.values()
        assert len({row["kind"] for row in table_rows}) == 1, table_rows
        assert [row["idx"] for row in table_rows] == list(range(len(table_rows))), table_rows


# A valid protobuf command and a valid node block around the payload under test: what the payload
# does must not change their rows.
NEIGHBOURS = (
    protobuf_command(random.Random(3), START_TS_MS),
    json.dumps(
        _block_doc(
            {"type": "cancel", "cancels": [{"a": 1, "o": 2}]},
            {"type": "SetGlobalAction", "pxs": [None, ["20.5", "20.6"]]},
        )
    ).encode(),
)
_NEIGHBOUR_SEQS, _NEIGHBOUR_TS_MS = _batch_keys(3)
NEIGHBOUR_ROWS = {
    i: DECODER.decode_one(_NEIGHBOUR_SEQS[i], _NEIGHBOUR_TS_MS[i], payload)
    for i, payload in ((0, NEIGHBOURS[0]), (2, NEIGHBOURS[1]))
}


def check_with_neighbours(payload: bytes) -> Rows:
    """Decode ``payload`` between two valid ones; check it and them, check that it has the same
    rows alone (``decode_one``), and return its rows."""
    rows = decode_checked([NEIGHBOURS[0], payload, NEIGHBOURS[1]])
    for i, alone in NEIGHBOUR_ROWS.items():
        assert _rows_for(rows, _NEIGHBOUR_SEQS[i]) == alone, "a payload changed its neighbours"
    found = _rows_for(rows, _NEIGHBOUR_SEQS[1])
    alone = DECODER.decode_one(_NEIGHBOUR_SEQS[1], _NEIGHBOUR_TS_MS[1], payload)
    assert_same_rows(found, alone, f"payload {payload[:120]!r} in a batch and alone")
    return found


def _rows_for(rows: Rows, seq: int) -> Rows:
    found = {
        name: [row for row in table_rows if row["seq"] == seq] for name, table_rows in rows.items()
    }
    return {name: table_rows for name, table_rows in found.items() if table_rows}


# --- (a) any bytes ---------------------------------------------------------------------------


def test_an_empty_batch_has_no_tables() -> None:
    assert DECODER.decode([], [], []) == {}


@PROPERTY
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_are_undecoded(payload: bytes) -> None:
    check_with_neighbours(payload)


@FEW
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=12))
def test_any_batch_of_bytes_decodes_or_is_undecoded(payloads: list[bytes]) -> None:
    decode_checked(payloads)


# --- (b) the node block path -------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


@PROPERTY
@given(st.binary(max_size=400).map(lambda tail: b"{" + tail))
@example(NOT_UTF8_JSON)
@example(DEEPLY_NESTED_JSON)
def test_bytes_starting_with_a_brace_decode_or_are_undecoded(payload: bytes) -> None:
    check_with_neighbours(payload)


@PROPERTY
@given(json_values, st.booleans())
def test_any_json_text_decodes_or_is_undecoded(value: Any, ascii_only: bool) -> None:
    check_with_neighbours(json.dumps(value, ensure_ascii=ascii_only).encode())


@PROPERTY
@given(
    st.fixed_dictionaries(
        {"abci_block": json_values}, optional={"resps": json_values, "extra": json_values}
    )
)
def test_json_with_any_abci_block_decodes_or_is_undecoded(doc: dict[str, Any]) -> None:
    rows = check_with_neighbours(json.dumps(doc).encode())
    if not isinstance(doc["abci_block"], dict):
        assert list(rows) == ["undecoded"], rows


# Valid blocks to break one part at a time: from make_feed and from the golden cases.
def _template_blocks() -> list[dict[str, Any]]:
    rng = random.Random(5)
    blocks = [json.loads(node_block(rng, START_TS_MS + 80 * i, 990_612_480 + i)) for i in range(8)]
    golden = REPO / "fixtures" / "golden" / "payloads.jsonl"
    for line in golden.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        if case["name"].startswith("node_") and "mangled" not in case["name"]:  # valid ones
            blocks.append(json.loads(bytes.fromhex(case["raw_hex"])))
    return blocks


TEMPLATE_BLOCKS = _template_blocks()
EDGE_VALUES = st.sampled_from(
    [
        None, True, False, 0, -1, 1.5, -0.0, 1e308, 2**32, 2**63, 2**64, 2**70, -(2**64),
        10**400, -(10**400), "", " ", "0", "-1", "1.5", "1e400", "nan", "inf", "1_000", "0x",
        "0xZZ", "0x" + "AB" * 20, "Gtc", "tp", [], {}, [[]], [None], {"x": 1},
        "1969-12-31T23:59:59.999", "2262-04-11T23:47:16.854775808", "9999-12-31T23:59:59",
        "2025-06-24 02:56:36", "2025-06-24T02:56:36.1x", "2025-06-24T02:56:36.²",
    ]
)  # fmt: skip


odd_values = EDGE_VALUES | json_values


def _break_somewhere(draw: Callable[..., Any], node: dict | list) -> None:
    """Replace by an odd value, or delete, one part of ``node``, at any depth."""
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.integers(0, 99)) < 85:
            node = child
            continue
        if isinstance(node, dict) and draw(st.integers(0, 4)) == 0:
            del node[key]
        else:
            node[key] = copy.deepcopy(draw(odd_values))  # later breaks may change it
        return


@st.composite
def broken_blocks(draw: Callable[..., Any]) -> dict[str, Any]:
    """A valid block with one to three parts replaced by odd values, or deleted."""
    doc = copy.deepcopy(draw(st.sampled_from(TEMPLATE_BLOCKS)))
    for _ in range(draw(st.integers(1, 3))):
        _break_somewhere(draw, doc)
    return doc


@PROPERTY
@given(broken_blocks())
@example(HUGE_INTEGER_PRICE_BLOCK)
@example(ROUND_BEYOND_U64_BLOCK)
def test_blocks_with_broken_parts_decode_or_are_undecoded(doc: dict[str, Any]) -> None:
    check_with_neighbours(json.dumps(doc).encode())


def _signed_actions(doc: dict[str, Any]) -> list[tuple[list[Any], int]]:
    """(list, position) of each signed action of a block, in block order."""
    return [
        (bundle["signed_actions"], position)
        for _, bundle in doc["abci_block"]["signed_action_bundles"]
        for position in range(len(bundle["signed_actions"]))
    ]


@st.composite
def blocks_with_a_broken_action(draw: Callable[..., Any]) -> tuple[dict, dict, int]:
    """(a valid block, the block with one action broken, that action's index in the block).

    Only the action object (``signed_actions[i]["action"]``) is broken, not the signature,
    nonce or vault around it."""
    original = draw(st.sampled_from([doc for doc in TEMPLATE_BLOCKS if _signed_actions(doc)]))
    doc = copy.deepcopy(original)
    slots = _signed_actions(doc)
    index = draw(st.integers(0, len(slots) - 1))
    actions, position = slots[index]
    if draw(st.integers(0, 9)) == 0:
        actions[position]["action"] = copy.deepcopy(draw(odd_values))
    else:
        _break_somewhere(draw, actions[position]["action"])
    return original, doc, index


def _other_actions(rows: Rows, index: int) -> list[dict[str, Any]]:
    """The actions rows of a block but action ``index`` and the actions inside it (multiSig)."""
    return [row for row in rows.get("actions", []) if index not in (row["idx"], row["outer_idx"])]


def _broken_first_action(action: Any) -> tuple[dict, dict, int]:
    original = _block_doc({"type": "noop"}, {"type": "cancel", "cancels": [{"a": 1, "o": 2}]})
    broken = copy.deepcopy(original)
    _signed_actions(broken)[0][0][0]["action"] = action
    return original, broken, 0


@PROPERTY
@given(blocks_with_a_broken_action())
@example(_broken_first_action("not an object"))  # see test_a_malformed_action_spoils_only_itself
@example(_broken_first_action(CANCEL_OID_BEYOND_U64))
def test_a_broken_action_spoils_only_itself(case: tuple[dict, dict, int]) -> None:
    """node.py: an action whose fields are not what its type promises becomes an undecoded row
    naming the action, and the rest of the block decodes."""
    original, broken, index = case
    rows = check_with_neighbours(json.dumps(broken).encode())
    assert "blocks" in rows, (
        f"breaking action {index} spoiled its whole block: {rows.get('undecoded')}"
    )
    seq, ts_ms = _NEIGHBOUR_SEQS[1], _NEIGHBOUR_TS_MS[1]
    before = DECODER.decode_one(seq, ts_ms, json.dumps(original).encode())
    assert _other_actions(rows, index) == _other_actions(before, index)


# --- (c) mutations of realistic payloads -------------------------------------------------------


def _feed_payloads() -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(20250624)
    commands = [protobuf_command(rng, START_TS_MS + 40 * i) for i in range(80)]
    blocks = [node_block(rng, START_TS_MS + 40 * i, 990_612_480 + i) for i in range(12)]
    return commands, blocks


FEED_COMMANDS, FEED_BLOCKS = _feed_payloads()
FEED = FEED_COMMANDS + FEED_BLOCKS


def test_feed_payloads_decode_without_undecoded_rows() -> None:
    rows = decode_checked(FEED)
    assert "undecoded" not in rows, rows.get("undecoded")
    assert len(rows["blocks"]) == len(FEED_BLOCKS)


@st.composite
def mutated_feed_payloads(draw: Callable[..., Any]) -> bytes:
    payload = bytearray(draw(st.sampled_from(FEED)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "delete", "insert", "splice"]))
        n = len(payload)
        if op == "truncate":
            del payload[draw(st.integers(0, n)) :]
        elif op == "flip" and n:
            payload[draw(st.integers(0, n - 1))] ^= draw(st.integers(1, 255))
        elif op == "delete" and n:
            start = draw(st.integers(0, n - 1))
            del payload[start : start + draw(st.integers(1, 8))]
        elif op == "insert":
            at = draw(st.integers(0, n))
            payload[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "splice":  # the head of this payload, the tail of another
            other = draw(st.sampled_from(FEED))
            payload = payload[: draw(st.integers(0, n))] + other[draw(st.integers(0, len(other))) :]
    return bytes(payload)


@PROPERTY
@given(mutated_feed_payloads())
@example(FEED_BLOCKS[0].replace(b'"time":"', b'"time":"\xe1', 1))  # see NOT_UTF8_JSON
def test_mutated_feed_payloads_decode_or_are_undecoded(payload: bytes) -> None:
    check_with_neighbours(payload)


@PROPERTY
@given(st.sampled_from(FEED_BLOCKS), st.floats(0, 1, exclude_max=True))
def test_a_truncated_block_is_undecoded_as_not_json(block: bytes, where: float) -> None:
    prefix = block[: max(1, int(len(block) * where))]
    rows = check_with_neighbours(prefix)
    assert list(rows) == ["undecoded"], rows
    assert "protobuf" not in rows["undecoded"][0]["reason"], rows


@PROPERTY
@given(st.sampled_from(FEED_COMMANDS), st.data())
def test_a_truncated_command_decodes_or_is_undecoded_as_protobuf(command: bytes, data) -> None:
    prefix = command[: data.draw(st.integers(1, len(command) - 1))]
    rows = check_with_neighbours(prefix)
    if "undecoded" in rows:
        assert "protobuf" in rows["undecoded"][0]["reason"], rows


# --- (d) ReplicaCommand fields round-trip into rows -------------------------------------------

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
f64 = st.floats(allow_nan=True, allow_infinity=True)
addresses = st.binary(max_size=32)
enum_numbers = st.integers(-2, 6)  # 0 unspecified, then named values, then numbers no name has


def fact_strategies(
    u32: st.SearchStrategy[int],
    u64: st.SearchStrategy[int],
    f64: st.SearchStrategy[float],
    addresses: st.SearchStrategy[bytes],
    enum_numbers: st.SearchStrategy[int],
) -> dict[str, st.SearchStrategy[Any]]:
    """A strategy per kind of command, its fields drawn from the given values."""
    return {
        "order": st.builds(
            pb.OrderPlace,
            asset=u32,
            is_buy=st.booleans(),
            px=f64,
            sz=f64,
            reduce_only=st.booleans(),
            tif=enum_numbers,
            trigger=st.none()
            | st.builds(
                pb.Trigger, trigger_px=f64, is_market=st.booleans(), take_profit=st.booleans()
            ),
            cloid=addresses,
            oid=u64,
        ),
        "cancel": st.builds(pb.OrderCancel, asset=u32, oid=st.none() | u64, cloid=addresses),
        "cancel_all": st.builds(pb.CancelAll, assets=st.lists(u32, max_size=6)),
        "fill": st.builds(
            pb.Fill,
            asset=u32,
            px=f64,
            sz=f64,
            taker_side=enum_numbers,
            maker=addresses,
            taker=addresses,
            maker_oid=u64,
            taker_oid=u64,
            tid=u64,
            fee=f64,
        ),
        "liquidation": st.builds(
            pb.Liquidation,
            asset=u32,
            liquidated_user=addresses,
            is_long=st.booleans(),
            sz=f64,
            mark_px=f64,
            insurance_fund_delta=f64,
        ),
        "funding": st.builds(
            pb.FundingSettlement,
            rates=st.lists(st.builds(pb.FundingRate, asset=u32, rate=f64, premium=f64), max_size=5),
        ),
        "oracle": st.builds(
            pb.OracleUpdate,
            validator=addresses,
            prices=st.lists(st.builds(pb.OraclePrice, asset=u32, px=f64), max_size=5),
        ),
        "withdrawal": st.builds(pb.Withdrawal, destination=addresses, amount_usd=f64, nonce=u64),
        "deposit": st.builds(
            pb.Deposit, depositor=addresses, amount_usd=f64, eth_tx_hash=addresses
        ),
    }


FACTS = fact_strategies(u32, u64, f64, addresses, enum_numbers)

# 0 is unset: the row takes the archive's ts_ms.
command_times = st.just(0) | st.integers(1, MAX_TS_MS)
far_future_times = st.integers(MAX_TS_MS + 1, 2**64 - 1)


def replica_command(
    kind: str, fact: Any, block: int, time_ms: int, user: bytes
) -> pb.ReplicaCommand:
    return pb.ReplicaCommand(block=block, time_ms=time_ms, user=user, **{kind: fact})


def _commands(
    times: st.SearchStrategy[int],
    kinds: dict[str, st.SearchStrategy[Any]] = FACTS,
    blocks: st.SearchStrategy[int] = u64,
    users: st.SearchStrategy[bytes] = addresses,
) -> st.SearchStrategy[pb.ReplicaCommand]:
    return st.one_of(
        [
            st.builds(replica_command, st.just(kind), facts, blocks, times, users)
            for kind, facts in kinds.items()
        ]
    )


commands = _commands(command_times)


def test_the_strategies_cover_every_kind() -> None:
    members = {f.name for f in pb.ReplicaCommand.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert set(FACTS) == members, "a kind of command was added: give it a strategy here"


TABLE_OF = {
    "order": "orders",
    "cancel": "cancels",
    "cancel_all": "cancels",
    "fill": "fills",
    "liquidation": "liquidations",
    "funding": "funding",
    "oracle": "oracle",
    "withdrawal": "withdrawals",
    "deposit": "deposits",
}
TIF = {1: "GTC", 2: "IOC", 3: "ALO"}
SIDE = {1: "BID", 2: "ASK"}


def _hex(raw: bytes) -> str | None:
    return "0x" + raw.hex() if raw else None


def _enum(names: dict[int, str], number: int) -> str | None:
    return None if number == 0 else names.get(number, str(number))


def _fact_rows(kind: str, fact: Any) -> list[dict[str, Any]]:
    """The rows the mapping rules give ``fact``, written out field by field."""
    if kind == "order":
        trigger = fact.trigger if fact.HasField("trigger") else None
        return [
            {
                "asset": fact.asset,
                "is_buy": fact.is_buy,
                "px": fact.px,
                "sz": fact.sz,
                "reduce_only": fact.reduce_only,
                "tif": _enum(TIF, fact.tif),
                "trigger_px": trigger.trigger_px if trigger else None,
                "trigger_is_market": trigger.is_market if trigger else None,
                "trigger_take_profit": trigger.take_profit if trigger else None,
                "cloid": _hex(fact.cloid),
                "oid": fact.oid,
            }
        ]
    if kind == "cancel":
        oid = fact.oid if fact.HasField("oid") else None
        return [{"asset": fact.asset, "oid": oid, "cloid": _hex(fact.cloid)}]
    if kind == "cancel_all":
        rows = [{"asset": asset, "oid": None, "cloid": None} for asset in fact.assets]
        return rows or [{"asset": None, "oid": None, "cloid": None}]
    if kind == "fill":
        return [
            {
                "asset": fact.asset,
                "px": fact.px,
                "sz": fact.sz,
                "taker_side": _enum(SIDE, fact.taker_side),
                "maker": _hex(fact.maker),
                "taker": _hex(fact.taker),
                "maker_oid": fact.maker_oid,
                "taker_oid": fact.taker_oid,
                "tid": fact.tid,
                "fee": fact.fee,
            }
        ]
    if kind == "liquidation":
        return [
            {
                "asset": fact.asset,
                "liquidated_user": _hex(fact.liquidated_user),
                "is_long": fact.is_long,
                "sz": fact.sz,
                "mark_px": fact.mark_px,
                "insurance_fund_delta": fact.insurance_fund_delta,
            }
        ]
    if kind == "funding":
        rows = [{"asset": r.asset, "rate": r.rate, "premium": r.premium} for r in fact.rates]
        return rows or [{"asset": None, "rate": None, "premium": None}]
    if kind == "oracle":
        validator = _hex(fact.validator)
        rows = [{"validator": validator, "asset": p.asset, "px": p.px} for p in fact.prices]
        return rows or [{"validator": validator, "asset": None, "px": None}]
    if kind == "withdrawal":
        return [
            {
                "destination": _hex(fact.destination),
                "amount_usd": fact.amount_usd,
                "nonce": fact.nonce,
            }
        ]
    if kind == "deposit":
        return [
            {
                "depositor": _hex(fact.depositor),
                "amount_usd": fact.amount_usd,
                "eth_tx_hash": _hex(fact.eth_tx_hash),
            }
        ]
    raise AssertionError(f"no expected rows written for kind {kind}")


def expected_rows(command: pb.ReplicaCommand, seq: int, ts_ms: int) -> Rows:
    kind = command.WhichOneof("kind")
    envelope = {
        "seq": seq,
        "time_ms": command.time_ms or ts_ms,
        "kind": kind,
        "block": command.block,
        "user": _hex(command.user),
    }
    rows = _fact_rows(kind, getattr(command, kind))
    table = TABLE_OF[kind]
    node_only = {field.name: None for field in NODE_FACT_FIELDS.get(table, ())}
    return {table: [envelope | {"idx": i} | row | node_only for i, row in enumerate(rows)]}


def same_value(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN, -0.0 not equal to 0.0 and True not equal to 1."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def assert_same_rows(actual: Rows, expected: Rows, what: str) -> None:
    assert sorted(actual) == sorted(expected), f"{what}: tables {sorted(actual)}"
    for name, rows in expected.items():
        assert len(actual[name]) == len(rows), f"{what}: {name} has {len(actual[name])} rows"
        for got, want in zip(actual[name], rows, strict=True):
            assert list(got) == list(SCHEMAS[name].names), f"{what}: {name} columns {list(got)}"
            differ = {k: (got[k], want.get(k)) for k in got if not same_value(got[k], want.get(k))}
            assert set(want) == set(got) and not differ, (
                f"{what}: table {name} row {got['seq']}/{got['idx']}: (decoded, expected) "
                f"{differ}; columns expected {sorted(want)}"
            )


@PROPERTY
@given(st.lists(commands, min_size=1, max_size=6))
def test_command_fields_round_trip_into_rows(batch: list[pb.ReplicaCommand]) -> None:
    payloads = [command.SerializeToString() for command in batch]
    rows = decode_checked(payloads)
    seqs, ts_ms = _batch_keys(len(batch))
    for command, seq, ts in zip(batch, seqs, ts_ms, strict=True):
        assert_same_rows(_rows_for(rows, seq), expected_rows(command, seq, ts), f"{command}")


# A batch in which every command of one kind is beyond the year 9999 has no table of that kind,
# rather than an empty one: ``decode`` promises "tables with at least one row".
FAR_FUTURE_CANCEL = replica_command("cancel", pb.OrderCancel(asset=1, oid=2), 1, MAX_TS_MS + 1, b"")


@PROPERTY
@given(st.lists(commands, max_size=3), _commands(far_future_times), st.lists(commands, max_size=3))
@example([], FAR_FUTURE_CANCEL, [])
def test_a_command_beyond_the_year_9999_is_undecoded(
    before: list[pb.ReplicaCommand], late: pb.ReplicaCommand, after: list[pb.ReplicaCommand]
) -> None:
    """No date partition can hold its rows."""
    batch = [*before, late, *after]
    payloads = [command.SerializeToString() for command in batch]
    rows = decode_checked(payloads)
    seqs, _ = _batch_keys(len(batch))
    got = _rows_for(rows, seqs[len(before)])
    assert list(got) == ["undecoded"], got
    assert f"time_ms {late.time_ms} is beyond the year 9999" in got["undecoded"][0]["reason"]


# --- (e) determinism, and batches against payloads alone ---------------------------------------

mixed_payloads = st.one_of(
    st.sampled_from(FEED),
    mutated_feed_payloads(),
    st.binary(max_size=64),
    commands.map(lambda command: command.SerializeToString()),
)


def _ipc_bytes(tables: dict[str, pa.Table]) -> dict[str, bytes]:
    out = {}
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.combine_chunks())
        out[name] = sink.getvalue().to_pybytes()
    return out


@FEW
@given(st.lists(mixed_payloads, max_size=12))
def test_decoding_twice_gives_the_same_tables(payloads: list[bytes]) -> None:
    seqs, ts_ms = _batch_keys(len(payloads))
    first = _ipc_bytes(decode_or_fail(seqs, ts_ms, payloads))
    again = _ipc_bytes(decode_or_fail(seqs, ts_ms, payloads))
    fresh = _ipc_bytes(decode_or_fail(seqs, ts_ms, payloads, Decoder()))
    assert first == again, "a second decode of the same batch differs"
    assert first == fresh, "another Decoder gives other tables for the same batch"


@FEW
@given(st.lists(mixed_payloads, min_size=1, max_size=10))
def test_a_batch_gives_each_payload_the_rows_it_has_alone(payloads: list[bytes]) -> None:
    rows = decode_checked(payloads)
    seqs, ts_ms = _batch_keys(len(payloads))
    for i, payload in enumerate(payloads):
        alone = DECODER.decode_one(seqs[i], ts_ms[i], payload)
        assert_same_rows(_rows_for(rows, seqs[i]), alone, f"payload {i} {payload[:60]!r}")


def test_a_large_batch_equals_its_slices() -> None:
    """The recorded demo feed (3000 commands and blocks) decoded at once and in slices of 700:
    the rows must not depend on where a batch, or any chunking inside the decoder, starts."""
    lines = DEMO_FEED.read_text(encoding="utf-8").splitlines()
    frames = [json.loads(line) for line in lines]
    seqs = [frame["seq"] for frame in frames]
    ts_ms = [frame["ts_ms"] for frame in frames]
    payloads = [bytes.fromhex(frame["raw_hex"]) for frame in frames]
    whole = decode_or_fail(seqs, ts_ms, payloads)
    parts: dict[str, list[pa.Table]] = {}
    for start in range(0, len(frames), 700):
        end = start + 700
        for name, table in decode_or_fail(
            seqs[start:end], ts_ms[start:end], payloads[start:end]
        ).items():
            parts.setdefault(name, []).append(table)
    assert sorted(whole) == sorted(parts)
    for name, table in whole.items():
        sliced = pa.concat_tables(parts[name]).combine_chunks()
        assert sliced.equals(table.combine_chunks()), f"table {name} differs when sliced"


# --- (f) values beyond every column, in every field ---------------------------------------------
# A value its column cannot hold must cost its own fact, never the decode: a vaultTransfer with
# usd 1e400 raised OverflowError out of ``decode``, and every later ``replica decode`` failed on
# that segment the same way.


@dataclass(frozen=True)
class Literal:
    """JSON text put into a document as it is: what ``json.dumps`` cannot write."""

    text: str


def dumps(doc: Any) -> bytes:
    """``json.dumps``, with each ``Literal`` written as its text."""
    texts: list[str] = []

    def placeholder(value: Any) -> str:
        if not isinstance(value, Literal):
            raise TypeError(f"not JSON: {value!r}")
        texts.append(value.text)
        return f"\x00{len(texts) - 1}\x00"

    text = json.dumps(doc, default=placeholder)
    for i, literal in enumerate(texts):
        text = text.replace(json.dumps(f"\x00{i}\x00"), literal, 1)
    return text.encode()


HUGE_STRING = "x" * 1_000_000
# Out of range for any column: integers beyond int64 and uint64, negative where unsigned,
# numbers beyond a double, every spelling of NaN and infinity, -0, nesting and a huge string.
OUT_OF_RANGE = [
    Literal("1" + "0" * 400), Literal("-1" + "0" * 400), Literal("1e400"), Literal("-1e400"),
    Literal("1E+309"), Literal("4.9e-325"), Literal("-0"), Literal("-0.0"), "NaN", "nan",
    "Infinity", "-Infinity", "inf",
    "1e400", "-0", "1" + "0" * 400, str(2**64), 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70,
    -(2**63) - 1, -(2**64), -1, 2**31, 2**32, -(2**31) - 1, -0.0, 5e-324, 1.7976931348623157e308,
    Literal("[" * 200 + "]" * 200), Literal('{"a":' * 200 + "0" + "}" * 200), HUGE_STRING,
]  # fmt: skip
# Not JSON (NaN and infinity as bare words), or deeper than the interpreter's recursion limit:
# not a block the node could have written (its parser stops at 128 levels), so they may cost
# the whole block.
NOT_A_BLOCK = [
    Literal("NaN"), Literal("Infinity"), Literal("-Infinity"),
    Literal("[" * 20_000 + "]" * 20_000), Literal('{"a":' * 20_000 + "0" + "}" * 20_000),
]  # fmt: skip
out_of_range = st.sampled_from(OUT_OF_RANGE)
# One of each sort, for the sweep over every field.
EACH_SORT = [
    Literal("1" + "0" * 400), Literal("1e400"), Literal("-0"), "NaN", 2**64, 2**63, -1,
    -(2**63) - 1, Literal("[" * 200 + "]" * 200), "x" * 100_000,
]  # fmt: skip

Path_ = tuple[str | int, ...]


def _paths(node: Any, path: Path_ = ()) -> list[Path_]:
    """Every place in a JSON document, containers and leaves alike."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*path, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*path, i))
    return found


def _replaced(doc: Any, path: Path_, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


VAULT_BLOCK = _block_doc(
    {"type": "vaultTransfer", "vaultAddress": "0x" + "d1" * 20, "isDeposit": True, "usd": 1_500},
    {"type": "noop"},
)


def _one_action_of_each_kind() -> list[tuple[dict[str, Any], int]]:
    """(a block, the index of an action in it): the first action of each kind the template
    blocks have, and a vaultTransfer."""
    found: dict[str, tuple[dict[str, Any], int]] = {"vaultTransfer": (VAULT_BLOCK, 0)}
    for doc in TEMPLATE_BLOCKS:
        for index, (actions, position) in enumerate(_signed_actions(doc)):
            action = actions[position]["action"]
            if isinstance(action, dict):
                found.setdefault(action["type"], (doc, index))
    return list(found.values())


EVERY_KIND = _one_action_of_each_kind()


def check_action_spoils_only_itself(
    original: dict[str, Any], index: int, path: Path_, value: Any
) -> None:
    """Put ``value`` at ``path`` in signed action ``index`` of ``original``: the block decodes,
    the other actions are as they were, and the action keeps its row unless the value is in its
    type, nonce, vault or expiry."""
    broken = copy.deepcopy(original)
    actions, position = _signed_actions(broken)[index]
    actions[position] = _replaced(actions[position], path, value)
    rows = check_with_neighbours(dumps(broken))
    assert "blocks" in rows, f"{value!r:.80} at {path} spoiled its block: {rows.get('undecoded')}"
    seq, ts_ms = _NEIGHBOUR_SEQS[1], _NEIGHBOUR_TS_MS[1]
    before = DECODER.decode_one(seq, ts_ms, json.dumps(original).encode())
    assert _other_actions(rows, index) == _other_actions(before, index)
    if path[0] == "action" and len(path) > 1 and path[1] != "type":
        kept = [row["idx"] for row in rows.get("actions", [])]
        assert index in kept, f"{value!r:.80} at {path}: {rows.get('undecoded')}"


def test_out_of_range_values_in_every_field_of_every_kind_of_action() -> None:
    """A value of each sort in each field of one action of each kind (and in the fields beside
    it: nonce, vaultAddress, expiresAfter)."""
    for original, index in EVERY_KIND:
        actions, position = _signed_actions(original)[index]
        signed = {key: value for key, value in actions[position].items() if key != "signature"}
        for path in _paths(signed):
            for value in EACH_SORT:
                check_action_spoils_only_itself(original, index, path, value)


@PROPERTY
@given(st.sampled_from([*TEMPLATE_BLOCKS, VAULT_BLOCK]), st.data())
def test_an_out_of_range_value_anywhere_in_a_block_decodes_or_is_undecoded(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(_paths(doc)))
    value = data.draw(st.sampled_from(OUT_OF_RANGE + NOT_A_BLOCK))
    check_with_neighbours(dumps(_replaced(doc, path, value)))


def _has_fields(case: tuple[dict[str, Any], int]) -> bool:
    actions, position = _signed_actions(case[0])[case[1]]
    return len(actions[position]["action"]) > 1  # more than its type


@PROPERTY
@given(st.sampled_from([case for case in EVERY_KIND if _has_fields(case)]), st.data())
def test_out_of_range_values_in_many_fields_of_an_action_spoil_only_it(
    case: tuple[dict[str, Any], int], data: st.DataObject
) -> None:
    """Its type untouched, the action keeps its row whatever its other fields hold."""
    original, index = case
    actions, position = _signed_actions(original)[index]
    paths = [p for p in _paths(actions[position]["action"]) if p[0] != "type"]
    broken = copy.deepcopy(original)
    slot = _signed_actions(broken)[index]
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        value = data.draw(out_of_range)
        with contextlib.suppress(KeyError, IndexError, TypeError):  # its container is replaced
            slot[0][slot[1]]["action"] = _replaced(slot[0][slot[1]]["action"], path, value)
    rows = check_with_neighbours(dumps(broken))
    assert index in [row["idx"] for row in rows.get("actions", [])], rows.get("undecoded")


# Protobuf: the extremes each field's type can carry, through the generated classes.
EXTREME_U32 = st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1])
EXTREME_U64 = st.sampled_from([0, 2**32, 2**63 - 1, 2**63, 2**64 - 1])
EXTREME_F64 = st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, 1e-310]
)
EXTREME_BYTES = st.sampled_from([b"", b"\x00", b"\xff" * 32, b"\xab" * 100_000])
EXTREME_ENUMS = st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)])
EXTREME_FACTS = fact_strategies(EXTREME_U32, EXTREME_U64, EXTREME_F64, EXTREME_BYTES, EXTREME_ENUMS)
extreme_commands = _commands(
    st.sampled_from([0, 1, MAX_TS_MS]), EXTREME_FACTS, EXTREME_U64, EXTREME_BYTES
)


@FEW
@given(st.lists(extreme_commands, min_size=1, max_size=4))
def test_extreme_protobuf_values_round_trip_into_rows(batch: list[pb.ReplicaCommand]) -> None:
    payloads = [command.SerializeToString() for command in batch]
    rows = decode_checked(payloads)
    seqs, ts_ms = _batch_keys(len(batch))
    for command, seq, ts in zip(batch, seqs, ts_ms, strict=True):
        assert_same_rows(_rows_for(rows, seq), expected_rows(command, seq, ts), f"{command}"[:300])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not out[-1] & 0x80:
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _nested(number: int, depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = _tag(number, 2) + _varint(len(inner)) + inner
    return inner


# Wire records no generated class writes: a varint beyond 64 bits, the largest one, NaN and
# infinity bits, a length beyond the payload, a megabyte that is not UTF-8, groups and messages
# nested deeper than the parser allows.
HOSTILE_RECORDS: list[Callable[[int], bytes]] = [
    lambda n: _tag(n, 0) + b"\xff" * 10 + b"\x01",
    lambda n: _tag(n, 0) + _varint(2**64 - 1),
    lambda n: _tag(n, 0) + _varint(2**63),
    lambda n: _tag(n, 1) + struct.pack("<d", math.nan),
    lambda n: _tag(n, 1) + struct.pack("<d", -math.inf),
    lambda n: _tag(n, 5) + struct.pack("<f", math.inf),
    lambda n: _tag(n, 2) + _varint(2**40) + b"x",
    lambda n: _tag(n, 2) + _varint(1_000_000) + b"\xff" * 1_000_000,
    lambda n: _tag(n, 3) * 300 + _tag(n, 4) * 300,
    lambda n: _nested(n, 300),
]
KIND_FIELDS = {f.name: f for f in pb.ReplicaCommand.DESCRIPTOR.oneofs_by_name["kind"].fields}


@PROPERTY
@given(commands, st.sampled_from(sorted(KIND_FIELDS)), st.sampled_from(HOSTILE_RECORDS), st.data())
def test_hostile_wire_records_in_every_field_decode_or_are_undecoded(
    command: pb.ReplicaCommand,
    kind: str,
    record: Callable[[int], bytes],
    data: st.DataObject,
) -> None:
    """A record appended to a command, at the top level or inside one kind's message (where
    protobuf merges it into that message), under any field's number or an unknown one."""
    member = KIND_FIELDS[kind]
    top = [f.number for f in pb.ReplicaCommand.DESCRIPTOR.fields] + [99]
    inner = [f.number for f in member.message_type.fields] + [99]
    if data.draw(st.booleans()):
        tail = record(data.draw(st.sampled_from(top)))
    else:
        body = record(data.draw(st.sampled_from(inner)))
        tail = _tag(member.number, 2) + _varint(len(body)) + body
    check_with_neighbours(command.SerializeToString() + tail)


@st.composite
def blocks_with_mangled_signed_actions(draw: Callable[..., Any]) -> tuple[dict[str, Any], int]:
    """A valid block with some of its signed actions (or their action, nonce, vault or expiry)
    replaced by any value, and the number of signed actions it has."""
    doc = copy.deepcopy(draw(st.sampled_from([d for d in TEMPLATE_BLOCKS if _signed_actions(d)])))
    slots = _signed_actions(doc)
    for actions, position in draw(st.lists(st.sampled_from(slots), min_size=1, max_size=4)):
        where = draw(st.sampled_from([None, "action", "nonce", "vaultAddress", "expiresAfter"]))
        value = copy.deepcopy(draw(odd_values))
        if where is None or not isinstance(actions[position], dict):
            actions[position] = value
        else:
            actions[position][where] = value
    return doc, len(slots)


@PROPERTY
@given(blocks_with_mangled_signed_actions())
def test_every_signed_action_has_one_actions_row_however_mangled(case: tuple[dict, int]) -> None:
    """However its signed actions are mangled, a block decodes, and its ``actions`` count and
    its top-level ``actions`` rows are its signed actions, one each (earlier, an action whose
    own fields could not be read lost its row, and one that was not an object its block)."""
    doc, count = case
    rows = check_with_neighbours(dumps(doc))
    assert "blocks" in rows, rows.get("undecoded")
    assert rows["blocks"][0]["actions"] == count
    top = [row["idx"] for row in rows.get("actions", []) if row["outer_idx"] is None]
    assert top == list(range(count))
