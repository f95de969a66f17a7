"""The fast path for a block's hot actions (``decoder.node_hot``: ``order``, ``cancel``,
``cancelByCloid``, read a block at a time) gives exactly the rows of the general path, which
reads each action alone: for well-formed blocks, where it must take the fast path, and for
blocks whose hot actions, elements and responses are mangled, where what it cannot read falls
back to the general path (hypothesis).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from replica.decoder.node import NodeColumns
from replica.decoder.node_frame import NULL, NotABlock, read_block, signed_actions
from replica.decoder.node_hot import read_hot

from fixtures.make_feed import START_TS_MS, mainnet_block

SEQ = 9_000
BLOCK_TIME = "2025-06-24T02:56:36.172847427"
ODD = [
    None, True, False, 0, -1, 1.5, 2**32, 2**64, 10**30, "", "0", "-1", "1.5", "1e400",
    "nan", "1_000", "0x", "0xAB", "Gtc", "tp", [], {}, [None], {"x": 1},
]  # fmt: skip


def rows_of(payload: bytes, *, fast: bool) -> str:
    """Every row NodeColumns makes of ``payload``, as text (so that NaN equals NaN)."""
    node = NodeColumns(fast=fast)
    try:
        node.add(SEQ, START_TS_MS, payload)
    except NotABlock as exc:
        return f"not a block: {exc}"
    return repr((list(node.tables()), node.undecoded))


def assert_same_rows(payload: bytes) -> None:
    assert rows_of(payload, fast=True) == rows_of(payload, fast=False), payload[:300]


def hot_count(payload: bytes) -> int:
    """How many of the block's actions the fast path reads."""
    block = read_block(payload)
    top: list[Any] = []
    responses = dict(block.resps.Full) if block.resps is not None else {}
    for bundle_hash, bundle in block.abci_block.signed_action_bundles:
        results = responses.get(bundle_hash, [])
        for position, (one, broken) in enumerate(signed_actions(bundle)):
            res = results[position].res if position < len(results) else None
            answer = (res.status, res.response) if res is not None else (None, NULL)
            top.append((one, [broken] if broken else [], None, *answer))
    return len(read_hot(top))


# --- blocks of hot actions -----------------------------------------------------------------


def _maybe_odd(draw: Callable[..., Any], value: Any) -> Any:
    return draw(st.sampled_from(ODD)) if draw(st.integers(0, 9)) == 0 else value


def _element(draw: Callable[..., Any], kind: str) -> dict[str, Any]:
    if kind == "order":
        element: dict[str, Any] = {
            "a": draw(st.integers(0, 200)), "b": draw(st.booleans()),
            "p": draw(st.sampled_from(["3097.3", "0.00012", "43659"])),
            "s": draw(st.sampled_from(["0.5631", "242.75", "1"])), "r": draw(st.booleans()),
            "t": draw(st.sampled_from([
                {"limit": {"tif": "Alo"}}, {"limit": {"tif": "Gtc"}}, {"limit": {}},
                {"trigger": {"triggerPx": "3000", "isMarket": True, "tpsl": "sl"}},
            ])),
            "c": draw(st.sampled_from(["0xE8A17983CEFC5D4EE803BEE48F69CB15", None])),
        }  # fmt: skip
        if element["c"] is None:
            del element["c"]
    elif kind == "cancel":
        element = {"a": draw(st.integers(0, 200)), "o": draw(st.integers(0, 2**40))}
    else:
        element = {"asset": draw(st.integers(0, 200)), "cloid": "0x" + "Ab" * 16}
    for key in list(element):
        if draw(st.integers(0, 19)) == 0:
            del element[key]
        else:
            element[key] = _maybe_odd(draw, element[key])
    return element


_STATUSES = [
    {"resting": {"oid": 465972522923}}, {"filled": {"totalSz": "0.129", "avgPx": "385.58",
    "oid": 7}}, {"error": "Order has invalid price."}, "success", "waitingForFill",
]  # fmt: skip


def _answer(draw: Callable[..., Any], elements: int) -> Any:
    shape = draw(st.integers(0, 9))
    user = draw(st.sampled_from(["0xF032AB", None]))
    if shape == 0:
        return {"user": user, "res": {"status": "err", "response": "User or API Wallet ..."}}
    if shape == 1:
        return {"user": user, "res": _maybe_odd(draw, None)}
    count = draw(st.integers(max(0, elements - 1), elements + 1))
    statuses = [_maybe_odd(draw, draw(st.sampled_from(_STATUSES))) for _ in range(count)]
    response = {"type": "order", "data": {"statuses": statuses}}
    return {"user": user, "res": {"status": "ok", "response": _maybe_odd(draw, response)}}


@st.composite
def hot_blocks(draw: Callable[..., Any]) -> bytes:
    """A compact node block (as the node writes it) of hot actions, some of another type (whose
    facts go to the same tables), with responses; any part may be odd. Some actions are
    mangled as text: a second ``type``, a string that is not UTF-8, an element not an object."""
    texts: list[bytes] = []
    bundles: list[Any] = []
    answers: list[Any] = []
    for b in range(draw(st.integers(1, 4))):
        signed: list[Any] = []
        results: list[Any] = []
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["order", "order", "cancel", "cancelByCloid", "modify"]))
            if kind == "modify":
                action: dict[str, Any] = {"type": kind, "oid": 5, "order": _element(draw, "order")}
                elements = 1
            else:
                key = "orders" if kind == "order" else "cancels"
                elements = draw(st.integers(0, 3))
                action = {"type": kind, key: [_element(draw, kind) for _ in range(elements)]}
                if kind == "order":
                    action["grouping"] = "na"
            text = json.dumps(action, separators=(",", ":")).encode()
            text = draw(st.sampled_from([text] * 6 + _mangled(text)))
            signed.append({"action": f"\x00{len(texts)}\x00", "nonce": 1_795_215_597_568})
            texts.append(text)
            results.append(_answer(draw, elements))
        if draw(st.integers(0, 9)) == 0:
            signed[0]["nonce"] = _maybe_odd(draw, "1")
        bundle_hash = f"0x{b:064x}"
        bundles.append([bundle_hash, {"signed_actions": signed, "broadcaster": "0xC030"}])
        answers.append([bundle_hash, results])
    block = {"time": BLOCK_TIME, "round": 990_612_480, "signed_action_bundles": bundles}
    resps = draw(st.sampled_from([{"Full": answers}] * 4 + [None]))
    payload = json.dumps({"abci_block": block, "resps": resps}, separators=(",", ":")).encode()
    for i, text in enumerate(texts):
        payload = payload.replace(json.dumps(f"\x00{i}\x00").encode(), text, 1)
    return payload


def _mangled(text: bytes) -> list[bytes]:
    kind = json.loads(text)["type"]
    return [
        text.replace(
            b'"type":"%s"' % kind.encode(), b'"type":"%s","type":"cancel"' % kind.encode()
        ),
        text.replace(b"}", b',"z":"\xff"}', 1),
        text.replace(b"[", b"[1,", 1),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hot_blocks())
@example(
    b'{"abci_block":{"time":"2025-06-24T02:56:36.1","signed_action_bundles":[["0x01",'
    b'{"signed_actions":[{"action":{"type":"order","type":"cancel","cancels":[{"a":1,"o":2}]},'
    b'"nonce":1}]}]]},"resps":null}'
)
def test_the_fast_path_gives_the_general_paths_rows(payload: bytes) -> None:
    """However the hot actions of a block are mangled, the rows are those of the general path:
    the same facts, the same outcomes, the same undecoded rows with the same reasons."""
    assert_same_rows(payload)


def test_mainnet_blocks_take_the_fast_path_and_give_the_general_paths_rows() -> None:
    """A mainnet-shaped block is read by the fast path whole (else it proves nothing), with
    the general path's rows."""
    rng = random.Random(11)
    for i in range(3):
        payload = mainnet_block(rng, START_TS_MS + i * 70, 990_612_480 + i, actions=300)
        assert hot_count(payload) == 300
        assert_same_rows(payload)


def test_an_action_the_fast_path_cannot_read_is_left_to_the_general_path() -> None:
    """One bad element, in an action of a block of good ones: the general path reads that action
    and says why; its neighbours keep the fast path."""
    good = {"type": "cancel", "cancels": [{"a": 1, "o": 2}]}
    bad = {"type": "cancel", "cancels": [{"a": 1, "o": "two"}]}
    signed = [{"action": action, "nonce": 1} for action in (good, bad, good)]
    block = {"time": BLOCK_TIME, "signed_action_bundles": [["0x01", {"signed_actions": signed}]]}
    payload = json.dumps({"abci_block": block}, separators=(",", ":")).encode()
    assert hot_count(payload) == 2
    assert_same_rows(payload)
    node = NodeColumns()
    node.add(SEQ, START_TS_MS, payload)
    assert [row["idx"] for row in node.undecoded] == [1]
    assert len(node.facts["cancels"]) == 2
