"""decoder/node_hot.py: the usual orders and cancels, read in one typed pass, give exactly the
rows the general path gives for the same block, whatever is odd about them (then the general
path takes the action: the hot path declines rather than guesses)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replica.decoder.node import NodeColumns
from replica.decoder.node_hot import hot_facts

from fixtures.make_feed import START_TS_MS, mainnet_block
from tests.test_decode_properties import EDGE_VALUES, json_values

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class GeneralPathOnly(NodeColumns):
    """Every action through the general path: what the hot path must match."""

    def _hot(self, *args: Any) -> bool:
        return False


def _tables(columns: NodeColumns) -> dict[str, Any]:
    found = {name: rows for name, _, rows in columns.tables()}
    return {**found, "undecoded": columns.undecoded}


def _both(payload: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    hot, general = NodeColumns(), GeneralPathOnly()
    for columns in (hot, general):
        columns.add(11, START_TS_MS, payload)
    return _tables(hot), _tables(general)


odd = EDGE_VALUES | json_values
prices = st.sampled_from(["13.465", "0.0001", "1e3", "-2", "abc", ""]) | odd
assets = st.integers(0, 200_000) | odd
cloids = st.sampled_from(["0x" + "Ab" * 16, "0x1", None]) | odd
order = st.fixed_dictionaries(
    {"a": assets, "b": st.booleans() | odd, "p": prices, "s": prices},
    optional={
        "r": st.booleans() | odd,
        "t": st.sampled_from([{"limit": {"tif": "Gtc"}}, {"limit": {"tif": "Ioc"}},
                              {"trigger": {"triggerPx": "1.5", "isMarket": True, "tpsl": "tp"}}])
        | odd,
        "c": cloids,
    },
)  # fmt: skip
actions = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("order"), "orders": st.lists(order, max_size=3) | odd},
        optional={"grouping": st.just("na")},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("cancel"),
            "cancels": st.lists(st.fixed_dictionaries({"a": assets, "o": assets}), max_size=3)
            | odd,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("cancelByCloid"),
            "cancels": st.lists(
                st.fixed_dictionaries({"asset": assets, "cloid": cloids}), max_size=3
            )
            | odd,
        }
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["order", "cancel", "modify", "noop"])}),
)
bodies = st.fixed_dictionaries(
    {}, optional={"oid": assets, "totalSz": prices, "avgPx": prices, "cloid": cloids}
)
statuses = st.one_of(
    st.sampled_from(["success", "waitingForFill", "waitingForTrigger"]),
    st.dictionaries(st.sampled_from(["resting", "filled", "error", "other"]),
                    bodies | st.text(max_size=20) | odd, max_size=2),
    odd,
)  # fmt: skip
responses = st.one_of(
    st.fixed_dictionaries(
        {"status": st.sampled_from(["ok", "err", None]) | st.text(max_size=4)},
        optional={
            "response": st.fixed_dictionaries(
                {"type": st.sampled_from(["order", "cancel"])},
                optional={
                    "data": st.fixed_dictionaries({"statuses": st.lists(statuses, max_size=4)})
                    | odd
                },
            )
            | st.text(max_size=20)
            | odd
        },
    ),
    st.none(),  # the node's frame: a response is an object or null
)


def _block(pairs: list[tuple[Any, Any, dict[str, Any]]]) -> bytes:
    bundle_hash = "0x" + "cd" * 32
    signed = [
        {"action": action, "nonce": 1_700_000_000_000 + i, **beside}
        for i, (action, _, beside) in enumerate(pairs)
    ]
    answers = [{"user": "0x" + "Ef" * 20, "res": res} for _, res, _ in pairs]
    block = {
        "abci_block": {
            "time": "2025-06-24T02:56:36.172847427",
            "round": 7,
            "signed_action_bundles": [[bundle_hash, {"signed_actions": signed}]],
        },
        "resps": {"Full": [[bundle_hash, answers]]},
    }
    return json.dumps(block).encode()


beside_the_action = st.fixed_dictionaries(
    {},
    optional={
        "vaultAddress": st.sampled_from(["0x" + "Ab" * 20, None]) | odd,
        "expiresAfter": st.integers(0, 2**64) | odd,
    },
)


@PROPERTY
@given(st.lists(st.tuples(actions, responses, beside_the_action), min_size=1, max_size=6))
def test_usual_and_odd_orders_and_cancels_give_the_general_paths_rows(
    pairs: list[tuple[Any, Any, dict[str, Any]]],
) -> None:
    hot, general = _both(_block(pairs))
    assert hot == general


@pytest.mark.parametrize("seed", range(3))
def test_mainnet_blocks_give_the_general_paths_rows_and_take_the_hot_path(seed: int) -> None:
    payload = mainnet_block(random.Random(seed), START_TS_MS, 990_612_480)
    hot, general = _both(payload)
    assert hot == general
    assert len(hot["actions"]) == 1000 and not hot["undecoded"]
    # The usual answered orders and cancels are read by the hot path, not handed over.
    block = json.loads(payload)
    responses = dict(block["resps"]["Full"])
    taken = 0
    for bundle_hash, bundle in block["abci_block"]["signed_action_bundles"]:
        for signed, answer in zip(bundle["signed_actions"], responses[bundle_hash], strict=True):
            res = answer["res"]
            found = hot_facts(
                json.dumps(signed["action"]).encode(), res["status"],
                json.dumps(res["response"]).encode(),
            )  # fmt: skip
            taken += found is not None
    assert taken == 1000
