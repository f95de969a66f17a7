"""The decoder against the golden fixtures in ``fixtures/golden`` (see ``fixtures/make_golden.py``).

The committed ``expected.json`` is the reviewed output for ``payloads.jsonl`` decoded as one
batch. A failure here means decoded rows changed: if the change is intended, regenerate with
``python fixtures/make_golden.py``, read the diff row by row and bump ``DECODER_VERSION``.

The last tests hold node inputs the golden cases leave out, each one an earlier decoder got
wrong, and assert what is right.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from replica.decoder.core import Decoder

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "fixtures" / "golden"
PAYLOADS = GOLDEN / "payloads.jsonl"
EXPECTED = GOLDEN / "expected.json"

# Tables that hold the same fact whichever form (protobuf command or node action) it came from.
SHARED_TABLES = ("orders", "cancels", "oracle", "withdrawals", "deposits")

Rows = list[dict[str, Any]]


def _load_cases() -> list[dict[str, Any]]:
    with PAYLOADS.open(encoding="utf-8") as lines:
        cases = [json.loads(line) for line in lines]
    for case in cases:
        case["payload"] = bytes.fromhex(case["raw_hex"])
    return cases


CASES = _load_cases()


def _decode(cases: list[dict[str, Any]]) -> dict[str, pa.Table]:
    return Decoder().decode(
        [case["seq"] for case in cases],
        [case["ts_ms"] for case in cases],
        [case["payload"] for case in cases],
    )


@pytest.fixture(scope="module")
def batch() -> dict[str, pa.Table]:
    return _decode(CASES)


@pytest.fixture(scope="module")
def batch_rows(batch: dict[str, pa.Table]) -> dict[str, Rows]:
    return {name: table.to_pylist() for name, table in batch.items()}


@pytest.fixture(scope="module")
def expected() -> dict[str, Rows]:
    return json.loads(EXPECTED.read_text(encoding="utf-8"))


def _row_lines(rows: Rows) -> list[str]:
    return [json.dumps(row) for row in rows]


def _rows_of(tables: dict[str, Rows], seq: int) -> dict[str, Rows]:
    found = {name: [row for row in rows if row["seq"] == seq] for name, rows in tables.items()}
    return {name: rows for name, rows in found.items() if rows}


def _by_form(cases: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Cases by name prefix: pb_ (protobuf commands), node_ (node blocks), bad_ (undecodable)."""
    forms: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        forms[case["name"].split("_", 1)[0]].append(case)
    return forms


# --- the fixtures themselves ------------------------------------------------------------------


def test_cases_are_well_formed() -> None:
    names = [case["name"] for case in CASES]
    assert len(set(names)) == len(names), "case names must be unique"
    seqs = [case["seq"] for case in CASES]
    assert seqs == sorted(set(seqs)), "seqs must be unique and ascending"
    assert set(_by_form(CASES)) == {"pb", "node", "bad"}, "every name starts pb_, node_ or bad_"


# --- the batch against expected.json -----------------------------------------------------------


def test_batch_decodes_to_expected_rows(
    batch_rows: dict[str, Rows], expected: dict[str, Rows]
) -> None:
    assert sorted(batch_rows) == sorted(expected), "the set of tables with rows changed"
    for name in sorted(expected):
        actual, wanted = batch_rows[name], expected[name]
        if actual != wanted:
            diff = "\n".join(
                difflib.unified_diff(
                    _row_lines(wanted),
                    _row_lines(actual),
                    f"expected.json: {name}",
                    f"decoded: {name}",
                    lineterm="",
                )
            )
            pytest.fail(
                f"table {name}: decoded rows differ from {EXPECTED.name} "
                f"(regenerate with `python fixtures/make_golden.py` only if the change is "
                f"right):\n{diff}"
            )


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_each_case_alone_decodes_as_in_the_batch(
    case: dict[str, Any], batch_rows: dict[str, Rows]
) -> None:
    alone = Decoder().decode_one(case["seq"], case["ts_ms"], case["payload"])
    in_batch = _rows_of(batch_rows, case["seq"])
    counts = {name: len(rows) for name, rows in alone.items()}
    assert sorted(alone) == sorted(in_batch), (
        f"decoded alone, the case gives tables (name: rows) {counts}; in the batch it has rows "
        f"in {sorted(in_batch)} (decode returns only tables with at least one row)"
    )
    for name, rows in in_batch.items():
        assert alone[name] == rows, f"table {name}: decoded alone, the rows differ"


def test_every_case_has_rows(batch_rows: dict[str, Rows], expected: dict[str, Rows]) -> None:
    for tables in (batch_rows, expected):
        seen = {row["seq"] for rows in tables.values() for row in rows}
        missing = [case["name"] for case in CASES if case["seq"] not in seen]
        assert not missing, f"cases with no row in any table: {missing}"


def test_cases_land_where_their_form_says(expected: dict[str, Rows]) -> None:
    forms = _by_form(CASES)
    undecoded = expected["undecoded"]
    for case in forms["bad"]:
        rows = _rows_of(expected, case["seq"])
        assert list(rows) == ["undecoded"], f"{case['name']}: rows outside undecoded: {rows}"
        (row,) = rows["undecoded"]
        assert row["reason"], case["name"]
        assert row["idx"] == 0, case["name"]
        assert row["time_ms"] == case["ts_ms"], case["name"]
        assert row["size"] == len(case["payload"]), case["name"]
    for case in forms["pb"]:
        rows = _rows_of(expected, case["seq"])
        assert "undecoded" not in rows, case["name"]
        assert len(rows) == 1, f"{case['name']}: one command fills one table, got {list(rows)}"
    for case in forms["node"]:
        rows = _rows_of(expected, case["seq"])
        assert len(rows["blocks"]) == 1, case["name"]
        for row in rows.get("undecoded", []):
            assert re.match(rf"node action {row['idx']}\b", row["reason"]), row
            assert row["size"] == len(case["payload"])
    assert {row["seq"] for row in undecoded} >= {case["seq"] for case in forms["bad"]}


def test_output_schemas_are_the_decoders(batch: dict[str, pa.Table]) -> None:
    schemas = Decoder().schemas
    for name, table in batch.items():
        assert table.num_rows > 0, f"table {name} is returned with no rows"
        assert table.schema.equals(schemas[name]), f"table {name}:\n{table.schema}"


# --- one table whichever form a fact comes from ------------------------------------------------


def test_node_and_protobuf_rows_have_the_same_columns() -> None:
    forms = _by_form(CASES)
    from_pb, from_node = _decode(forms["pb"]), _decode(forms["node"])
    schemas = Decoder().schemas
    for name in SHARED_TABLES:
        assert name in from_pb and name in from_node, f"golden cases give no {name} of a form"
        pb_schema, node_schema = from_pb[name].schema, from_node[name].schema
        assert pb_schema.names == node_schema.names, name
        assert pb_schema.types == node_schema.types, name
        assert pb_schema.equals(schemas[name]), name


def test_node_rows_fill_the_columns_protobuf_rows_fill(expected: dict[str, Rows]) -> None:
    """A column that protobuf rows fill and node rows always leave null would be a fact that one
    form loses: the golden node cases fill every column the protobuf cases fill."""
    forms = _by_form(CASES)
    pb_seqs = {case["seq"] for case in forms["pb"]}
    node_seqs = {case["seq"] for case in forms["node"]}
    for name in SHARED_TABLES:
        rows = expected[name]

        def filled(seqs: set[int], rows: Rows = rows) -> set[str]:
            return {
                k for row in rows if row["seq"] in seqs for k, v in row.items() if v is not None
            }

        lost = filled(pb_seqs) - filled(node_seqs)
        assert not lost, f"{name}: node rows never fill {sorted(lost)}"


# --- the generator ---------------------------------------------------------------------------


def test_make_golden_reproduces_the_committed_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "fixtures/make_golden.py", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / PAYLOADS.name) in result.stdout, result.stdout
    for committed in (PAYLOADS, EXPECTED):
        fresh = tmp_path / committed.name
        assert fresh.read_bytes() == committed.read_bytes(), (
            f"{committed.relative_to(REPO)} is not what fixtures/make_golden.py writes now; "
            f"regenerate it and review the diff"
        )


# --- inputs the golden cases leave out: an earlier decoder was wrong on these ----------------

BLOCK_TIME = "2025-06-24T02:56:36.172847427"
BUNDLE = "0x" + "ab" * 32
VAULT = "0xdfc24b077bc1425ad1dea75bcb6f8158e10df303"
USER = "0x5c14457b0bcd60a2866883662879ef0f7dc9cb30"


def _block_payload(signed_actions: list[Any], responses: list[Any] | None = None) -> bytes:
    block = {
        "time": BLOCK_TIME,
        "round": 7,
        "signed_action_bundles": [[BUNDLE, {"signed_actions": signed_actions}]],
    }
    resps = None if responses is None else {"Full": [[BUNDLE, responses]]}
    return json.dumps({"abci_block": block, "resps": resps}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "bad_action", ["not an object", [1, 2], None], ids=["action-str", "action-list", "action-null"]
)
def test_a_malformed_action_spoils_only_itself(bad_action: Any) -> None:
    """decoder/node.py: "an action whose fields are not what its type promises does not spoil
    its block: it becomes an undecoded row naming the action, and the rest of the block
    decodes." An earlier version of the decoder lost the whole block when the action was not
    an object (AttributeError in the handler that names the action's type)."""
    bad_signed = {"action": bad_action, "nonce": 0}
    payload = _block_payload([bad_signed, {"action": {"type": "noop"}, "nonce": 1}])
    rows = Decoder().decode_one(1, 2, payload)
    undecoded = rows.get("undecoded", [])
    kinds = [(row["idx"], row["kind"]) for row in rows.get("actions", [])]
    assert "blocks" in rows and kinds == [(0, None), (1, "noop")], (
        f"the block around one malformed action was not decoded, or the action lost its row "
        f"(every signed action keeps one): {kinds}, undecoded rows {undecoded}"
    )
    assert [row["idx"] for row in undecoded] == [0], undecoded
    assert re.match(r"node action 0\b", undecoded[0]["reason"]), undecoded


@pytest.mark.parametrize(
    "field, value",
    [("nonce", "abc"), ("vaultAddress", 5), ("expiresAfter", -1)],
    ids=["nonce-text", "vault-number", "expires-negative"],
)
def test_a_bad_field_beside_an_action_spoils_only_that_action(field: str, value: Any) -> None:
    """One signed action with an odd ``nonce``, ``vaultAddress`` or ``expiresAfter`` costs that
    value only: the action keeps its row with the value null, an undecoded row says why, and
    every other action of the block decodes. (Earlier, the action lost its row, so
    ``blocks.actions`` no longer matched the rows of ``actions``.)"""
    bad_signed = {"action": {"type": "noop"}, "nonce": 0, field: value}
    payload = _block_payload([bad_signed, {"action": {"type": "noop"}, "nonce": 1}])
    rows = Decoder().decode_one(1, 2, payload)
    undecoded = rows.get("undecoded", [])
    actions = rows.get("actions", [])
    assert "blocks" in rows and [row["idx"] for row in actions] == [0, 1], (
        f"one signed action with {field}={value!r} lost its row: {undecoded}"
    )
    column = {"nonce": "nonce", "vaultAddress": "vault", "expiresAfter": "expires_after"}[field]
    assert actions[0]["kind"] == "noop" and actions[0][column] is None, actions[0]
    assert [row["idx"] for row in undecoded] == [0], undecoded
    assert field in undecoded[0]["reason"] or column in undecoded[0]["reason"], undecoded


def test_vault_transfer_amount_is_in_usd_like_usd_send() -> None:
    """``vaultTransfer`` carries ``usd`` as an integer in millionths of a dollar (float * 1e6, as
    the Hyperliquid SDKs sign it), which the decoder divides: a $1.50 vault deposit and a $1.50
    ``usdSend`` (amount "1.5") both get ``transfers.amount`` 1.5. One column, one unit."""
    vault = {"type": "vaultTransfer", "vaultAddress": VAULT, "isDeposit": True, "usd": 1_500_000}
    send = {"type": "usdSend", "destination": VAULT, "amount": "1.5", "time": 3}
    payload = _block_payload(
        [{"action": vault, "nonce": 1}, {"action": send, "nonce": 2}],
        [{"user": USER, "res": {"status": "ok", "response": {"type": "default"}}}] * 2,
    )
    transfers = Decoder().decode_one(1, 2, payload)["transfers"]
    amounts = {row["kind"]: row["amount"] for row in transfers}
    assert amounts == {"vaultTransfer": 1.5, "usdSend": 1.5}, (
        f"transfers.amount mixes units: {amounts} for a $1.50 vaultTransfer and usdSend"
    )
