"""A node's JSON block (one replica_cmds line) into rows.

The node writes a block as ``{"abci_block": {...}, "resps": null | {"Full": [...]}}``: bundles of
signed actions, and per bundle the node's responses, one per action. Every action becomes a row
of ``actions`` with its JSON kept whole; the actions that carry a fact the protobuf contract also
carries (orders, cancels, oracle prices, withdrawals, deposits) also become rows of that fact's
table, under the same column names, so a table holds the same fact whichever form it came from.

Prices and sizes are decimal strings in the node's JSON; they become float64 like the protobuf
doubles (the exact strings stay in ``actions.action``). Optional fields are sometimes absent and
sometimes null, and both read as null.

An action whose fields are not what its type promises does not spoil its block: it becomes an
``undecoded`` row naming the action, and the rest of the block decodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec

Row = dict[str, Any]
Rows = dict[str, list[Row]]

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode
_U32 = 1 << 32
_U64 = 1 << 64


class NotABlock(ValueError):
    """The payload is not a node block; the message says why."""


# --- field readers: strict, so a wrong type is an error here rather than in Arrow -----------


def _int(value: Any, limit: int = _U64) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {value!r}")
    number = int(value)
    if not 0 <= number < limit:
        raise ValueError(f"{number} is out of range")
    return number


def _u32(value: Any) -> int | None:
    return _int(value, _U32)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a decimal, got {value!r}")
    return float(value)


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {value!r}")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {value!r}")


def _address(value: Any) -> str | None:
    text = _text(value)
    return text.lower() if text else None


def _json_text(value: Any) -> str | None:
    return None if value is None else _encode_json(value).decode()


@lru_cache(maxsize=4096)
def _epoch_seconds(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def block_time_ns(text: str) -> int:
    """``2025-06-24T02:56:36.172847427`` (UTC, no zone) in nanoseconds since the epoch."""
    seconds, _, fraction = text.partition(".")
    if len(seconds) != 19 or (fraction and not fraction.isdigit()):
        raise ValueError(f"block time {text!r} is not YYYY-MM-DDTHH:MM:SS[.fraction]")
    time_ns = _epoch_seconds(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
    if not 0 <= time_ns < 1 << 63:
        raise ValueError(f"block time {text!r} is outside 1970-2262")
    return time_ns


# --- facts carried by actions ---------------------------------------------------------------


def _order(order: dict[str, Any], oid: Any) -> Row:
    kind = order.get("t") or {}
    limit, trigger = kind.get("limit"), kind.get("trigger")
    tif = _text(limit.get("tif")) if limit else None
    return {
        "asset": _u32(order["a"]),
        "is_buy": _bool(order["b"]),
        "px": _float(order["p"]),
        "sz": _float(order["s"]),
        "reduce_only": _bool(order.get("r")),
        "tif": tif.upper() if tif else None,
        "trigger_px": _float(trigger.get("triggerPx")) if trigger else None,
        "trigger_is_market": _bool(trigger.get("isMarket")) if trigger else None,
        "trigger_take_profit": (trigger.get("tpsl") == "tp") if trigger else None,
        "cloid": _address(order.get("c")),
        "oid": _int(oid),
    }


def _status_oid(status: Any) -> Any:
    """The oid the node gave an order, from a ``resting`` or ``filled`` status."""
    if isinstance(status, dict):
        for outcome in status.values():
            if isinstance(outcome, dict) and "oid" in outcome:
                return outcome["oid"]
    return None


def _statuses(response: Any) -> list[Any]:
    if isinstance(response, dict):
        data = response.get("data")
        if isinstance(data, dict) and isinstance(data.get("statuses"), list):
            return data["statuses"]
    return []


Facts = Iterator[tuple[str, Row]]


def _orders(action: dict, user: str | None, response: Any) -> Facts:
    statuses = _statuses(response)
    for i, order in enumerate(action["orders"]):
        yield "orders", _order(order, _status_oid(statuses[i]) if i < len(statuses) else None)


def _modify(action: dict, user: str | None, response: Any) -> Facts:
    yield "orders", _order(action["order"], action.get("oid"))


def _batch_modify(action: dict, user: str | None, response: Any) -> Facts:
    for modify in action["modifies"]:
        yield "orders", _order(modify["order"], modify.get("oid"))


def _cancels(action: dict, user: str | None, response: Any) -> Facts:
    for cancel in action["cancels"]:
        yield "cancels", {"asset": _u32(cancel["a"]), "oid": _int(cancel["o"]), "cloid": None}


def _cancels_by_cloid(action: dict, user: str | None, response: Any) -> Facts:
    for cancel in action["cancels"]:
        row = {"asset": _u32(cancel["asset"]), "oid": None, "cloid": _address(cancel["cloid"])}
        yield "cancels", row


def _oracle(action: dict, user: str | None, response: Any) -> Facts:
    """``pxs`` holds, per asset index, the oracle price (or ``[oracle, mark]``), or null."""
    for asset, px in enumerate(action["pxs"]):
        oracle = px[0] if isinstance(px, list) and px else px
        if oracle is not None:
            yield "oracle", {"validator": user, "asset": asset, "px": _float(oracle)}


def _withdrawal(action: dict, user: str | None, response: Any) -> Facts:
    row = {
        "destination": _address(action["destination"]),
        "amount_usd": _float(action["amount"]),
        "nonce": _int(action.get("time")),
    }
    yield "withdrawals", row


def _deposit(action: dict, user: str | None, response: Any) -> Facts:
    row = {
        "depositor": _address(action.get("user")),
        "amount_usd": _float(action.get("usd")),
        "eth_tx_hash": _address(action.get("ethTxHash")),
    }
    yield "deposits", row


def _transfer(action: dict, user: str | None, response: Any) -> Facts:
    row = {
        "destination": _address(action.get("destination") or action.get("vaultAddress")),
        "token": _text(action.get("token")),
        "amount": _float(action.get("amount", action.get("usd"))),
        "nonce": _int(action.get("time") or action.get("nonce")),
    }
    yield "transfers", row


FACTS_OF_ACTION: dict[str, Callable[[dict, str | None, Any], Facts]] = {
    "order": _orders,
    "modify": _modify,
    "batchModify": _batch_modify,
    "cancel": _cancels,
    "cancelByCloid": _cancels_by_cloid,
    "SetGlobalAction": _oracle,
    "withdraw3": _withdrawal,
    "VoteEthDepositAction": _deposit,
    "usdSend": _transfer,
    "spotSend": _transfer,
    "usdClassTransfer": _transfer,
    "vaultTransfer": _transfer,
}


# --- the block -------------------------------------------------------------------------------


def _responses(resps: Any) -> dict[str, list[Any]]:
    """Each bundle's responses by bundle hash (they align one-to-one with its actions)."""
    if resps is None:
        return {}
    if not isinstance(resps, dict) or not isinstance(resps.get("Full"), list):
        raise NotABlock('node block: resps is neither null nor {"Full": [...]}')
    return {bundle_hash: results for bundle_hash, results in resps["Full"]}


def decode_block(payload: bytes) -> Rows:
    """Rows, by table, for one node block; each row without its ``seq``.

    Raises ``NotABlock`` when the payload is not JSON or not a block; one bad action only adds
    an ``undecoded`` row."""
    try:
        doc = _decode_json(payload)
    except msgspec.DecodeError as exc:
        raise NotABlock(f"not JSON: {exc}") from None
    try:
        return _block_rows(doc)
    except NotABlock:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise NotABlock(f"node block: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return f"{type(exc).__name__}: {exc}"


def _block_rows(doc: Any) -> Rows:
    if not isinstance(doc, dict) or not isinstance(doc.get("abci_block"), dict):
        raise NotABlock("JSON but not a node block (no abci_block object)")
    block = doc["abci_block"]
    time_ns = block_time_ns(block["time"])
    time_ms = time_ns // 1_000_000
    round_ = _int(block.get("round"))
    responses = _responses(doc.get("resps"))
    rows: Rows = {"blocks": [], "actions": [], "undecoded": []}
    counts = {"bundles": 0, "actions": 0}
    for bundle_hash, bundle in block["signed_action_bundles"]:
        counts["bundles"] += 1
        results = responses.get(bundle_hash, [])
        broadcaster = _address(bundle.get("broadcaster"))
        broadcaster_nonce = _int(bundle.get("broadcaster_nonce"))
        for position, signed in enumerate(bundle["signed_actions"]):
            idx = counts["actions"]
            counts["actions"] += 1
            result = results[position] if position < len(results) else None
            try:
                action_row, facts = _action_rows(signed, result)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                kind = signed.get("action", {}).get("type") if isinstance(signed, dict) else None
                reason = f"node action {idx} ({kind}): {_describe(exc)}"
                rows["undecoded"].append({"idx": idx, "time_ms": time_ms, "reason": reason})
                continue
            action_row |= {
                "idx": idx,
                "time_ms": time_ms,
                "block": round_,
                "bundle_hash": _address(bundle_hash),
                "broadcaster": broadcaster,
                "broadcaster_nonce": broadcaster_nonce,
            }
            rows["actions"].append(action_row)
            kind, user = action_row["kind"], action_row["user"]
            for table, fact in facts:
                fact |= {"time_ms": time_ms, "kind": kind, "block": round_, "user": user}
                rows.setdefault(table, []).append(fact)
    rows["blocks"].append(
        {
            "idx": 0,
            "time_ms": time_ms,
            "block": round_,
            "time_ns": time_ns,
            "parent_round": _int(block.get("parent_round")),
            "proposer": _address(block.get("proposer")),
            "hardfork": _json_text(block.get("hardfork")),
            "has_responses": bool(responses),
            **counts,
        }
    )
    for table_rows in rows.values():
        if table_rows and "idx" not in table_rows[0]:
            for idx, row in enumerate(table_rows):
                row["idx"] = idx
    return rows


def _action_rows(signed: dict, result: Any) -> tuple[Row, list[tuple[str, Row]]]:
    action = signed["action"]
    kind = _text(action["type"])
    user = status = response = None
    if isinstance(result, dict):
        user = _address(result.get("user"))
        res = result.get("res")
        if isinstance(res, dict):
            status, response = _text(res.get("status")), res.get("response")
    row = {
        "kind": kind,
        "nonce": _int(signed.get("nonce")),
        "vault": _address(signed.get("vaultAddress")),
        "expires_after": _int(signed.get("expiresAfter")),
        "user": user,
        "status": status,
        "response": _json_text(response),
        "action": _json_text(action),
    }
    handler = FACTS_OF_ACTION.get(kind) if kind is not None else None
    facts = list(handler(action, user, response)) if handler is not None else []
    return row, facts
