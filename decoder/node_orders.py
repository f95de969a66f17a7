"""Orders and cancels of node actions, each with its own outcome from the node's response.

The response to ``order``, ``batchModify``, ``cancel`` and ``cancelByCloid`` lists one status
per element, in order: ``"success"``, ``{"resting": {"oid"}}``, ``{"filled": {"totalSz",
"avgPx", "oid"}}``, ``{"error": text}``, ``"waitingForFill"``, ... An element rejected inside an
``ok`` response is still a row, with status ``error`` and the text: the row says it placed
nothing. Without responses (the node's default) every status is null.
"""

from __future__ import annotations

from typing import Any

import msgspec
from replica.decoder.node_values import Facts, Float, decoder, lower, number, uint64


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
_decode_statuses = msgspec.json.Decoder(_StatusResponse | str | None).decode

# status, error, filled_sz, avg_px, oid
Outcome = tuple[str | None, str | None, float | None, float | None, int | None]
_NO_OUTCOME: Outcome = (None, None, None, None, None)


def _statuses(response: msgspec.Raw) -> list[Any]:
    """The response's statuses, or none: an unexpected response costs the outcomes only."""
    try:
        parsed = _decode_statuses(response)
    except msgspec.DecodeError:
        return []
    if isinstance(parsed, _StatusResponse) and parsed.data is not None:
        return parsed.data.statuses
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


def _order(order: _Order, target: int | str | None, result: Outcome) -> tuple[Any, ...]:
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


def orders(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    statuses = _statuses(response)
    for i, order in enumerate(_decode_orders(action).orders):
        yield "orders", _order(order, None, outcome(statuses, i))


def modify(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    change = _decode_modify(action)
    yield "orders", _order(change.order, change.oid, outcome(_statuses(response), 0))


def batch_modify(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    statuses = _statuses(response)
    for i, change in enumerate(_decode_modifies(action).modifies):
        yield "orders", _order(change.order, change.oid, outcome(statuses, i))


def cancels(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    statuses = _statuses(response)
    for i, cancel in enumerate(_decode_cancels(action).cancels):
        yield "cancels", (cancel.a, cancel.o, None, *outcome(statuses, i)[:2])


def cancels_by_cloid(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    statuses = _statuses(response)
    for i, cancel in enumerate(_decode_cancels_by_cloid(action).cancels):
        yield "cancels", (cancel.asset, None, lower(cancel.cloid), *outcome(statuses, i)[:2])


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
