"""Orders and cancels of node actions, each with its own outcome from the node's response.

The response to ``order``, ``batchModify``, ``cancel`` and ``cancelByCloid`` lists one status
per element, in order: ``"success"``, ``{"resting": {"oid"}}``, ``{"filled": {"totalSz",
"avgPx", "oid"}}``, ``{"error": text}``, ``"waitingForFill"``, ... An element rejected inside an
``ok`` response is still a row, with status ``error`` and the text: the row says it placed
nothing. Without responses (the node's default) every status is null.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec
from replica.decoder.node_values import (
    Facts,
    Float,
    decoder,
    json_array,
    lower,
    number,
    uint64,
)


class _Limit(msgspec.Struct):
    tif: str | None = None


class _TriggerSpec(msgspec.Struct):
    triggerPx: Float = None  # the node's names
    isMarket: bool | None = None
    tpsl: str | None = None


class _OrderType(msgspec.Struct):
    limit: _Limit | None = None
    trigger: _TriggerSpec | None = None


class _Order(msgspec.Struct):
    a: int
    b: bool
    p: float
    s: float
    r: bool | None = None
    t: _OrderType | None = None
    c: str | None = None


class _OrderAction(msgspec.Struct):
    orders: list[_Order]


class _Modify(msgspec.Struct):
    order: _Order
    oid: int | str | None = None  # the order replaced: its oid, or its cloid


class _ModifyAction(msgspec.Struct):
    modifies: list[_Modify]


class _Cancel(msgspec.Struct):
    a: int
    o: int


class _CancelAction(msgspec.Struct):
    cancels: list[_Cancel]


class _CancelByCloid(msgspec.Struct):
    asset: int
    cloid: str


class _CancelByCloidAction(msgspec.Struct):
    cancels: list[_CancelByCloid]


class _Statuses(msgspec.Struct):
    statuses: list[Any] = []


class _StatusResponse(msgspec.Struct):
    data: _Statuses | None = None


_decode_orders = decoder(_OrderAction)
_decode_modify = decoder(_Modify)
_decode_modifies = decoder(_ModifyAction)
_decode_cancels = decoder(_CancelAction)
_decode_cancels_by_cloid = decoder(_CancelByCloidAction)
# A response as the node writes it: an object with statuses, or (for "err") a string.
_StatusAnswer = _StatusResponse | str | None
_decode_statuses = msgspec.json.Decoder(_StatusAnswer).decode

# status, error, filled_sz, avg_px, oid
Outcome = tuple[str | None, str | None, float | None, float | None, int | None]
_NO_OUTCOME: Outcome = (None, None, None, None, None)


def _statuses_in(parsed: _StatusAnswer) -> list[Any]:
    if isinstance(parsed, _StatusResponse) and parsed.data is not None:
        return parsed.data.statuses
    return []


def _statuses(response: msgspec.Raw) -> list[Any]:
    """The response's statuses, or none: an unexpected response costs the outcomes only."""
    try:
        return _statuses_in(_decode_statuses(response))
    except msgspec.DecodeError:
        return []


def outcome(statuses: list[Any], i: int) -> Outcome:
    """Element ``i``'s status: its name, error text, filled size and price, and oid."""
    if i >= len(statuses):
        return _NO_OUTCOME
    status = statuses[i]
    if type(status) is dict and len(status) == 1:  # the usual: {"resting": {...}}, ...
        ((name, body),) = status.items()  # a JSON key: text
        if type(body) is dict:
            sz, px, oid = body.get("totalSz"), body.get("avgPx"), body.get("oid")
            return (name, None, None if sz is None else number(sz),
                    None if px is None else number(px), uint64(oid))  # fmt: skip
    if isinstance(status, str):
        return status, None, None, None, None
    if not isinstance(status, dict) or len(status) != 1:
        return _NO_OUTCOME
    ((name, body),) = status.items()
    if not isinstance(name, str):
        return _NO_OUTCOME
    if not isinstance(body, dict):
        return name, body if isinstance(body, str) else None, None, None, None
    sz, px = number(body.get("totalSz")), number(body.get("avgPx"))
    return name, None, sz, px, uint64(body.get("oid"))


def _order(order: _Order, result: Outcome, target: int | str | None = None) -> tuple[Any, ...]:
    """An orders row's fact columns (see FACT_COLUMNS): the order, the order it replaces, and
    its outcome, whose oid is the order's own."""
    kind = order.t
    tif = trigger_px = is_market = take_profit = None
    if kind is not None:
        if kind.limit is not None and kind.limit.tif:
            tif = kind.limit.tif.upper()
        if kind.trigger is not None:
            trigger = kind.trigger
            trigger_px, is_market = trigger.triggerPx, trigger.isMarket
            take_profit = trigger.tpsl == "tp" if trigger.tpsl else None
    replaces_oid = target if isinstance(target, int) else None
    replaces_cloid = lower(target) if isinstance(target, str) else None
    status, error, filled_sz, avg_px, oid = result
    return (order.a, order.b, order.p, order.s, order.r, tif, trigger_px, is_market,
            take_profit, lower(order.c), oid, replaces_oid, replaces_cloid, status, error,
            filled_sz, avg_px)  # fmt: skip


# The facts of some actions of one type, given each one's statuses: for each fact, the
# position of its action in the list, and its values.
GroupFacts = tuple[list[int], list[tuple[Any, ...]]]


def _group_facts(
    actions: list[Any],
    statuses: list[list[Any]],
    elements: Callable[[Any], list[Any]],
    values: Callable[[Any, Outcome], tuple[Any, ...]],
) -> GroupFacts:
    """A fact per element of each action (an order, a cancel), with the element's outcome."""
    positions: list[int] = []
    facts: list[tuple[Any, ...]] = []
    for position, (action, answer) in enumerate(zip(actions, statuses, strict=True)):
        for i, element in enumerate(elements(action)):
            positions.append(position)
            facts.append(values(element, outcome(answer, i)))
    return positions, facts


def _order_facts(actions: list[_OrderAction], statuses: list[list[Any]]) -> GroupFacts:
    return _group_facts(actions, statuses, attrgetter("orders"), _order)


def _cancel_facts(actions: list[_CancelAction], statuses: list[list[Any]]) -> GroupFacts:
    return _group_facts(
        actions, statuses, attrgetter("cancels"),
        lambda cancel, result: (cancel.a, cancel.o, None, *result[:2]),
    )  # fmt: skip


def _cancel_by_cloid_facts(
    actions: list[_CancelByCloidAction], statuses: list[list[Any]]
) -> GroupFacts:
    return _group_facts(
        actions, statuses, attrgetter("cancels"),
        lambda cancel, result: (cancel.asset, None, lower(cancel.cloid), *result[:2]),
    )  # fmt: skip


def _modify_facts(actions: list[_Modify], statuses: list[list[Any]]) -> GroupFacts:
    return _group_facts(
        actions, statuses, lambda change: [change],
        lambda change, result: _order(change.order, result, change.oid),
    )  # fmt: skip


def _batch_modify_facts(actions: list[_ModifyAction], statuses: list[list[Any]]) -> GroupFacts:
    return _group_facts(
        actions, statuses, attrgetter("modifies"),
        lambda change, result: _order(change.order, result, change.oid),
    )  # fmt: skip


def _one(table: str, facts: GroupFacts) -> Facts:
    for values in facts[1]:
        yield table, values


def orders(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    return _one("orders", _order_facts([_decode_orders(action)], [_statuses(response)]))


def modify(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    return _one("orders", _modify_facts([_decode_modify(action)], [_statuses(response)]))


def batch_modify(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    return _one("orders", _batch_modify_facts([_decode_modifies(action)], [_statuses(response)]))


def cancels(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    return _one("cancels", _cancel_facts([_decode_cancels(action)], [_statuses(response)]))


def cancels_by_cloid(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    facts = _cancel_by_cloid_facts([_decode_cancels_by_cloid(action)], [_statuses(response)])
    return _one("cancels", facts)


class Batched(NamedTuple):
    """A hot action type read many actions at a time: a decoder of a JSON array of such
    actions, the table of their facts, and their facts given each one's statuses (the same
    values ``FACTS_OF_ACTION``'s handler of that type gives for each action alone)."""

    decode: Callable[[bytes], list[Any]]
    table: str
    facts: Callable[[list[Any], list[list[Any]]], GroupFacts]


# The types that make up nearly all of a busy block (order 80%, cancelByCloid 12%, cancel 8%),
# and the modifies market makers send in bulk.
BATCHED = {
    "order": Batched(decoder(list[_OrderAction]), "orders", _order_facts),
    "cancel": Batched(decoder(list[_CancelAction]), "cancels", _cancel_facts),
    "cancelByCloid": Batched(
        decoder(list[_CancelByCloidAction]), "cancels", _cancel_by_cloid_facts
    ),
    "modify": Batched(decoder(list[_Modify]), "orders", _modify_facts),
    "batchModify": Batched(decoder(list[_ModifyAction]), "orders", _batch_modify_facts),
}
_decode_many_statuses = msgspec.json.Decoder(list[_StatusAnswer]).decode


def statuses_of(responses: list[msgspec.Raw]) -> list[list[Any]]:
    """``_statuses`` of each response: in one pass, or one by one when one is not as usual."""
    try:
        parsed = _decode_many_statuses(json_array(responses))
    except msgspec.DecodeError:
        return [_statuses(response) for response in responses]
    return [_statuses_in(answer) for answer in parsed]


ORDER_COLUMNS = {
    "orders": (
        "asset", "is_buy", "px", "sz", "reduce_only", "tif", "trigger_px", "trigger_is_market",
        "trigger_take_profit", "cloid", "oid", "replaces_oid", "replaces_cloid", "status",
        "error", "filled_sz", "avg_px",
    ),
    "cancels": ("asset", "oid", "cloid", "status", "error"),
}  # fmt: skip

ORDER_ACTIONS = {
    "order": orders,
    "modify": modify,
    "batchModify": batch_modify,
    "cancel": cancels,
    "cancelByCloid": cancels_by_cloid,
}
