"""Node actions in the shapes real blocks have (``fixtures/golden_node.py``), decoded into the
facts an analyst needs: each assertion names the rule it holds the decoder to, which
``expected.json`` shows only row by row."""

from __future__ import annotations

from typing import Any

import pytest
from replica.decoder.core import Decoder
from replica.decoder.keccak import keccak256

from fixtures.golden_node import (
    CLOID,
    EVM_TX,
    SUB,
    VALIDATORS,
    account_actions,
    deposit_votes,
    mangled_actions,
    multi_sig,
    oracle_prices,
    order_outcomes,
    transfers,
    without_responses,
)
from fixtures.make_golden import cases

Rows = dict[str, list[dict[str, Any]]]


def _decode(payload: bytes) -> Rows:
    return Decoder().decode_one(1, 2, payload)


def _top_level(rows: Rows) -> list[dict[str, Any]]:
    return [row for row in rows.get("actions", []) if row["outer_idx"] is None]


@pytest.mark.parametrize("case", cases(), ids=lambda case: case["name"])
def test_every_signed_action_has_its_row_in_every_golden_block(case: dict[str, Any]) -> None:
    """blocks.actions is the number of the block's top-level actions rows, whatever is wrong
    with an action (an earlier decoder dropped the row of an action whose nonce, vault, expiry
    or type it could not read)."""
    rows = _decode(bytes.fromhex(case["raw_hex"]))
    for block in rows.get("blocks", []):
        assert [row["idx"] for row in _top_level(rows)] == list(range(block["actions"]))


def test_a_mangled_action_keeps_its_row_with_nulls_and_an_undecoded_row() -> None:
    rows = _decode(mangled_actions())
    actions = rows["actions"]
    assert len(actions) == rows["blocks"][0]["actions"] == 10
    assert [row["kind"] for row in actions[5:9]] == [None] * 4
    assert actions[1]["nonce"] is None and actions[2]["nonce"] is None  # text, beyond uint64
    assert actions[3]["vault"] is None and actions[4]["expires_after"] is None
    assert sorted(row["idx"] for row in rows["undecoded"]) == list(range(1, 10))
    (transfer,) = rows["transfers"]  # "8 subaccount:0x..." as the SDK writes it with a vault
    assert (transfer["amount"], transfer["subaccount"], transfer["to_perp"]) == (
        8.0,
        SUB.lower(),
        True,
    )


def test_deposit_votes_are_usd_millionths_with_their_validator_and_event_id() -> None:
    votes = _decode(deposit_votes())["deposits"]
    assert [vote["amount_usd"] for vote in votes] == [15.147247] * 3 + [2.0]
    assert [vote["user"] for vote in votes[:3]] == [v.lower() for v in VALIDATORS]
    event_ids = {
        (v["eth_block_number"], v["eth_tx_index"], v["eth_event_type"], v["eth_event_index"])
        for v in votes[:3]
    }
    assert event_ids == {(472_446_433, 1, "Deposit", 0)}  # short and long keys alike
    assert votes[3]["eth_event_index"] == 3


def test_no_asset_with_a_price_is_dropped() -> None:
    oracle = _decode(oracle_prices())["oracle"]
    pxs = [(r["asset"], r["px"], r["px_2"]) for r in oracle if r["source"] == "pxs"]
    assert pxs == [(0, None, 0.37621), (1, 0.24525, 6.8952)]
    sources = [(r["source"], r["coin"], r["dex"], r["px"]) for r in oracle if r["source"] != "pxs"]
    assert sources == [
        ("nativePx", None, None, 38.123),
        ("usdtUsdcPx", None, None, 0.99981),
        ("externalPerpPxs", "BTC", None, 61250.5),
        ("externalPerpPxs", "ETH", None, 3012.2),
        ("oraclePxs", "xyz:GOLD", "xyz", 2651.4),
        ("oraclePxs", "xyz:OIL", "xyz", 71.02),
        ("markPxs", "xyz:GOLD", "xyz", 2651.9),
    ]


def test_orders_keep_the_replaced_order_apart_from_the_resulting_one_and_their_status() -> None:
    orders = _decode(order_outcomes())["orders"]
    got = [
        (o["kind"], o["asset"], o["oid"], o["replaces_oid"], o["replaces_cloid"], o["status"],
         o["error"], o["filled_sz"], o["avg_px"])
        for o in orders
    ]  # fmt: skip
    assert got == [
        ("order", 10_107, 465_972_522_900, None, None, "resting", None, None, None),
        ("order", 110_003, None, None, None, "waitingForFill", None, None, None),
        ("modify", 10_107, 465_972_522_923, 465_972_522_900, None, "filled", None, 0.129, 385.58),
        ("batchModify", 4, 465_972_523_001, None, CLOID, "resting", None, None, None),
        ("batchModify", 4, None, 465_972_522_800, None, "error",
         "Cannot modify canceled or filled order", None, None),
    ]  # fmt: skip


def test_transfers_keep_direction_subaccount_and_units() -> None:
    rows = _decode(transfers())["transfers"]
    got = {r["kind"]: (r["amount"], r["raw_amount"], r["to_perp"], r["is_deposit"]) for r in rows}
    assert got == {
        "usdClassTransfer": (12.5, None, False, None),
        "subAccountTransfer": (25.5, 25_500_000, None, True),
        "subAccountSpotTransfer": (100.0, None, None, False),
        "sendAsset": (50.0, None, None, None),
        "cDeposit": (None, 100_000_000, None, True),
        "cWithdraw": (None, 25_000_000, None, False),
        "vaultTransfer": (1.5, 1_500_000, None, False),
    }


def test_a_multi_sig_action_is_decoded_as_if_it_stood_alone() -> None:
    rows = _decode(multi_sig())
    outer, inner = rows["actions"]
    assert rows["blocks"][0]["actions"] == 1
    assert (outer["kind"], outer["outer_idx"], inner["kind"], inner["outer_idx"]) == (
        "multiSig", None, "order", 0
    )  # fmt: skip
    assert inner["user"] == rows["orders"][0]["user"] != outer["user"]  # the multiSigUser
    assert rows["orders"][0]["status"] == "filled"


def test_a_block_without_resps_has_no_responses_and_an_empty_full_has() -> None:
    assert _decode(without_responses())["blocks"][0]["has_responses"] is False
    empty = next(c for c in cases() if c["name"] == "node_block_no_bundles")
    assert _decode(bytes.fromhex(empty["raw_hex"]))["blocks"][0]["has_responses"] is True


def test_standing_orders_margin_and_evm_transactions_get_rows() -> None:
    rows = _decode(account_actions())
    assert [r["at_ms"] for r in rows["scheduled_cancels"]] == [1_750_733_855_000, None]
    twaps = [(r["kind"], r["asset"], r["sz"], r["minutes"], r["twap_id"], r["status"])
             for r in rows["twaps"]]  # fmt: skip
    assert twaps == [
        ("twapOrder", 0, 1.5, 30, 77_738_308, "running"),
        ("twapCancel", 0, None, None, 77_738_308, "success"),
    ]
    margin = [(r["kind"], r["is_cross"], r["leverage"], r["amount_usd"]) for r in rows["margin"]]
    assert margin == [
        ("updateLeverage", False, 10, None),
        ("updateIsolatedMargin", None, None, -2.5),
    ]
    (evm,) = rows["evm_txs"]
    assert evm["size"] == len(bytes.fromhex(EVM_TX[2:]))
    assert evm["tx_hash"] == "0x" + keccak256(bytes.fromhex(EVM_TX[2:])).hex()


def test_keccak256_is_ethereums_hash_not_sha3() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )
    assert keccak256(b"x" * 136).hex() != keccak256(b"x" * 135).hex()  # a block boundary
