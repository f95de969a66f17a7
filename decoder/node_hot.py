"""The actions that make nearly all of a mainnet block (``order`` about 80%, ``cancelByCloid``
12%, ``cancel`` 8%), each read with its type in one typed pass, and its response's statuses in
another.

The general path reads such an action three times (its type, its fact handler's struct, the
response as untyped JSON walked in Python) through several layers of calls: about half of what
decoding a busy block cost. This path only ever gives what the general path gives for the same
action, or declines (None) and leaves the action to it: anything unusual (another type, a
value the structs do not take, a status of another shape) is the general
path's, with its finer reasons. ``tests/test_decode_node_hot.py`` checks that the two agree.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType
from replica.decoder.node_orders import Outcome, _Cancel, _CancelByCloid, _Order, _order
from replica.decoder.node_values import decoder, lower, number, uint64


class _OrderAction(msgspec.Struct, tag="order", tag_field="type"):
    orders: list[_Order]


class _CancelAction(msgspec.Struct, tag="cancel", tag_field="type"):
    cancels: list[_Cancel]


class _CancelByCloidAction(msgspec.Struct, tag="cancelByCloid", tag_field="type"):
    cancels: list[_CancelByCloid]


class _Body(msgspec.Struct):
    totalSz: str | None = None  # the node's names
    avgPx: str | None = None
    oid: int | None = None


class _Status(msgspec.Struct, forbid_unknown_fields=True):
    """One of the usual statuses; absent (UNSET) and null differ, as in the general path."""

    resting: _Body | UnsetType | None = UNSET
    filled: _Body | UnsetType | None = UNSET
    error: str | UnsetType | None = UNSET


class _Statuses(msgspec.Struct):
    statuses: list[_Status | str] = []


class _StatusResponse(msgspec.Struct):
    data: _Statuses | None = None


_HotAction = _OrderAction | _CancelAction | _CancelByCloidAction
_KINDS = {_OrderAction: "order", _CancelAction: "cancel", _CancelByCloidAction: "cancelByCloid"}
_TABLES = {_OrderAction: "orders", _CancelAction: "cancels", _CancelByCloidAction: "cancels"}
_decode_hot = decoder(_HotAction)
_decode_statuses = msgspec.json.Decoder(_StatusResponse | str | None).decode
_NO_OUTCOME: Outcome = (None, None, None, None, None)


class _Declined(Exception):
    """A status this path does not read: the action is the general path's."""


def _outcome(status: _Status | str) -> Outcome:
    """``node_orders.outcome`` of one usual status."""
    if type(status) is str:
        return status, None, None, None, None
    assert isinstance(status, _Status)
    resting, filled, error = status.resting, status.filled, status.error
    if error is UNSET:
        if filled is UNSET and type(resting) is _Body:
            name, body = "resting", resting
        elif resting is UNSET and type(filled) is _Body:
            name, body = "filled", filled
        else:
            raise _Declined
        sz, px = body.totalSz, body.avgPx
        return (name, None, None if sz is None else number(sz),
                None if px is None else number(px), uint64(body.oid))  # fmt: skip
    if resting is UNSET and filled is UNSET and type(error) is str:
        return "error", error, None, None, None
    raise _Declined


def _outcomes(response: msgspec.Raw, elements: int) -> list[Outcome]:
    """The outcome of each of ``elements`` elements, in order; raises ``_Declined``."""
    parsed = _decode_statuses(response)
    statuses = parsed.data.statuses if type(parsed) is _StatusResponse and parsed.data else []
    found = [_outcome(status) for status in statuses[:elements]]
    return found + [_NO_OUTCOME] * (elements - len(found))


def hot_facts(
    action: bytes, status: str | None, response: msgspec.Raw
) -> tuple[str, str, list[tuple[Any, ...]]] | None:
    """An order, cancel or cancelByCloid action's type, table and fact columns (as
    ``FACTS_OF_ACTION`` gives them); None for any other action, or one to leave to the general
    path."""
    try:
        parsed = _decode_hot(action)
        if status == "err":  # rejected: it placed nothing
            return _KINDS[type(parsed)], _TABLES[type(parsed)], []
        if type(parsed) is _OrderAction:
            orders = parsed.orders
            outcomes = _outcomes(response, len(orders))
            return (
                "order",
                "orders",
                [
                    _order(order, None, result)
                    for order, result in zip(orders, outcomes, strict=True)
                ],
            )
        cancels = parsed.cancels
        outcomes = _outcomes(response, len(cancels))
        if type(parsed) is _CancelAction:
            return (
                "cancel",
                "cancels",
                [
                    (cancel.a, cancel.o, None, result[0], result[1])
                    for cancel, result in zip(cancels, outcomes, strict=True)
                ],
            )
        return (
            "cancelByCloid",
            "cancels",
            [
                (cancel.asset, None, lower(cancel.cloid), result[0], result[1])
                for cancel, result in zip(cancels, outcomes, strict=True)
            ],
        )
    except (msgspec.DecodeError, _Declined):
        return None
