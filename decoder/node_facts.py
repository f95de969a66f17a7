"""The facts a node action carries, as rows of the tables the protobuf facts go to.

Each handler of ``FACTS_OF_ACTION`` takes an action's JSON (with the user and response the node
gave it) and yields ``(table, values)``, the values in the order of ``FACT_COLUMNS[table]``.
Actions are decoded by msgspec into typed structs in C; integers are read as any int, their
ranges checked where rows become columns (``columns.arrays``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from replica.schemas.decoded import TRANSFERS_SCHEMA

# ``strict=False`` lets a decimal string decode as a float (and a numeric string as an int), as
# the node writes prices and sizes.

Float = float | None


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
    oid: int | str | None = None  # an oid, or the order's cloid


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


class _OracleAction(msgspec.Struct):
    pxs: list[list[Float] | Float]  # per asset: the oracle price, or [oracle, mark], or null


class _Withdrawal(msgspec.Struct):
    destination: str
    amount: float
    time: int | None = None


class _Deposit(msgspec.Struct):
    user: str | None = None
    usd: Float = None
    ethTxHash: str | None = None


class _Transfer(msgspec.Struct):
    destination: str | None = None
    token: str | None = None
    amount: Float = None
    time: int | None = None
    nonce: int | None = None


class _VaultTransfer(msgspec.Struct):
    vaultAddress: str
    isDeposit: bool
    usd: float  # millionths of a dollar, an integer: one beyond a double is out of range


class _OrderStatuses(msgspec.Struct):
    statuses: list[Any] = []


class _OrderResponse(msgspec.Struct):
    data: _OrderStatuses | None = None


def _decoder(struct: type) -> Callable[[bytes], Any]:
    return msgspec.json.Decoder(struct, strict=False).decode


_decode_orders = _decoder(_OrderAction)
_decode_modify = _decoder(_Modify)
_decode_modifies = _decoder(_ModifyAction)
_decode_cancels = _decoder(_CancelAction)
_decode_cancels_by_cloid = _decoder(_CancelByCloidAction)
_decode_oracle = _decoder(_OracleAction)
_decode_withdrawal = _decoder(_Withdrawal)
_decode_deposit = _decoder(_Deposit)
_decode_transfer = _decoder(_Transfer)
_decode_vault_transfer = _decoder(_VaultTransfer)
_decode_order_response = msgspec.json.Decoder(_OrderResponse | str | None).decode


def lower(text: str | None) -> str | None:
    return text.lower() if text else None


def _order(order: _Order, oid: Any) -> tuple:
    """An orders row's fact columns (see FACT_COLUMNS)."""
    kind = order.t
    limit = kind.limit if kind is not None else None
    trigger = kind.trigger if kind is not None else None
    tif = limit.tif.upper() if limit is not None and limit.tif else None
    if trigger is None:
        return (order.a, order.b, order.p, order.s, order.r, tif, None, None, None,
                lower(order.c), oid)  # fmt: skip
    return (order.a, order.b, order.p, order.s, order.r, tif, trigger.triggerPx,
            trigger.isMarket, trigger.tpsl == "tp" if trigger.tpsl else None, lower(order.c),
            oid)  # fmt: skip


def _status_oid(status: Any) -> int | None:
    """The oid the node gave an order, from a ``resting`` or ``filled`` status."""
    if isinstance(status, dict):
        for outcome in status.values():
            if isinstance(outcome, dict):
                oid = outcome.get("oid")
                if isinstance(oid, int) and 0 <= oid < 1 << 64:
                    return oid
    return None


Facts = Iterator[tuple[str, tuple]]


def _orders(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    statuses: list[Any] = []
    try:
        parsed = _decode_order_response(response)
    except msgspec.DecodeError:  # an unexpected response costs the oids, not the orders
        parsed = None
    if isinstance(parsed, _OrderResponse) and parsed.data is not None:
        statuses = parsed.data.statuses
    for i, order in enumerate(_decode_orders(action).orders):
        yield "orders", _order(order, _status_oid(statuses[i]) if i < len(statuses) else None)


def _oid(value: int | str | None) -> int | None:
    return value if isinstance(value, int) else None


def _modify(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    modify = _decode_modify(action)
    yield "orders", _order(modify.order, _oid(modify.oid))


def _batch_modify(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    for modify in _decode_modifies(action).modifies:
        yield "orders", _order(modify.order, _oid(modify.oid))


def _cancels(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    for cancel in _decode_cancels(action).cancels:
        yield "cancels", (cancel.a, cancel.o, None)


def _cancels_by_cloid(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    for cancel in _decode_cancels_by_cloid(action).cancels:
        yield "cancels", (cancel.asset, None, lower(cancel.cloid))


def _oracle(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    for asset, px in enumerate(_decode_oracle(action).pxs):
        oracle = (px[0] if px else None) if isinstance(px, list) else px
        if oracle is not None:
            yield "oracle", (user, asset, oracle)


def _withdrawal(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    withdrawal = _decode_withdrawal(action)
    yield "withdrawals", (lower(withdrawal.destination), withdrawal.amount, withdrawal.time)


def _deposit(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    deposit = _decode_deposit(action)
    yield "deposits", (lower(deposit.user), deposit.usd, lower(deposit.ethTxHash))


def _transfer(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    transfer = _decode_transfer(action)
    nonce = transfer.time if transfer.time is not None else transfer.nonce
    yield "transfers", (lower(transfer.destination), transfer.token, transfer.amount, nonce)


def _vault_transfer(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """``usd`` is in millionths of a dollar; a withdrawal from the vault goes to the user."""
    transfer = _decode_vault_transfer(action)
    destination = lower(transfer.vaultAddress) if transfer.isDeposit else user
    yield "transfers", (destination, None, transfer.usd / 1e6, None)


# The columns each handler's tuples fill, after seq, idx, time_ms, kind, block and user.
FACT_COLUMNS = {
    "orders": (
        "asset", "is_buy", "px", "sz", "reduce_only", "tif", "trigger_px", "trigger_is_market",
        "trigger_take_profit", "cloid", "oid",
    ),
    "cancels": ("asset", "oid", "cloid"),
    "oracle": ("validator", "asset", "px"),
    "withdrawals": ("destination", "amount_usd", "nonce"),
    "deposits": ("depositor", "amount_usd", "eth_tx_hash"),
}  # fmt: skip
FACT_KEYS = ("seq", "idx", "time_ms", "kind", "block", "user")
FACT_COLUMNS["transfers"] = tuple(TRANSFERS_SCHEMA.names[len(FACT_KEYS) :])

FACTS_OF_ACTION: dict[str, Callable[[bytes, str | None, msgspec.Raw], Facts]] = {
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
    "vaultTransfer": _vault_transfer,
}
