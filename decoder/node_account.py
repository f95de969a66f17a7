"""Node actions that change an account's standing orders and margin rather than trade:
``scheduleCancel``, ``twapOrder``/``twapCancel``, ``updateLeverage``, ``updateIsolatedMargin``,
and ``evmRawTx`` (a HyperEVM transaction, kept by its size and hash)."""

from __future__ import annotations

from typing import Any

import msgspec
from replica.decoder.keccak import keccak256
from replica.decoder.node_orders import outcome
from replica.decoder.node_values import Facts, decoder, millionths, uint64


class _ScheduleCancel(msgspec.Struct):
    time: int | None = None


class _Twap(msgspec.Struct):
    a: int
    b: bool
    s: float
    r: bool | None = None
    m: int | None = None  # minutes
    t: bool | None = None  # randomize


class _TwapOrder(msgspec.Struct):
    twap: _Twap


class _TwapCancel(msgspec.Struct):
    a: int
    t: int  # the twap id


class _TwapStatus(msgspec.Struct):
    status: Any = None


class _TwapResponse(msgspec.Struct):
    data: _TwapStatus | None = None


class _Leverage(msgspec.Struct):
    asset: int
    isCross: bool | None = None  # the node's names
    leverage: int | None = None


class _IsolatedMargin(msgspec.Struct):
    asset: int
    isBuy: bool | None = None
    ntli: int | None = None  # millionths of USDC, signed


class _EvmRawTx(msgspec.Struct):
    data: str


_decode_schedule_cancel = decoder(_ScheduleCancel)
_decode_twap_order = decoder(_TwapOrder)
_decode_twap_cancel = decoder(_TwapCancel)
_decode_twap_response = msgspec.json.Decoder(_TwapResponse | str | None).decode
_decode_leverage = decoder(_Leverage)
_decode_isolated_margin = decoder(_IsolatedMargin)
_decode_evm_raw_tx = decoder(_EvmRawTx)


def _twap_outcome(response: msgspec.Raw) -> tuple[str | None, str | None, int | None]:
    """A twap response's status (``{"running": {"twapId"}}``, ``"success"``, ``{"error"}``)."""
    try:
        parsed = _decode_twap_response(response)
    except msgspec.DecodeError:
        return None, None, None
    if not isinstance(parsed, _TwapResponse) or parsed.data is None:
        return None, None, None
    status = parsed.data.status
    name, error, *_ = outcome([status], 0)
    twap_id = None
    if isinstance(status, dict) and isinstance(status.get("running"), dict):
        twap_id = uint64(status["running"].get("twapId"))
    return name, error, twap_id


def schedule_cancel(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    yield "scheduled_cancels", (_decode_schedule_cancel(action).time,)


def twap_order(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    twap = _decode_twap_order(action).twap
    status, error, twap_id = _twap_outcome(response)
    yield "twaps", (twap.a, twap.b, twap.s, twap.r, twap.m, twap.t, twap_id, status, error)


def twap_cancel(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    cancel = _decode_twap_cancel(action)
    status, error, _ = _twap_outcome(response)
    yield "twaps", (cancel.a, None, None, None, None, None, cancel.t, status, error)


def leverage(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    update = _decode_leverage(action)
    yield "margin", (update.asset, update.isCross, update.leverage, None, None, None)


def isolated_margin(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    update = _decode_isolated_margin(action)
    usd = millionths(update.ntli) if update.ntli is not None else None
    yield "margin", (update.asset, None, None, update.isBuy, usd, update.ntli)


def evm_raw_tx(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """``data`` is the signed transaction as 0x hex; its hash is keccak-256 of the bytes."""
    data = _decode_evm_raw_tx(action).data
    raw = bytes.fromhex(data[2:] if data[:2].lower() == "0x" else data)  # ValueError: undecoded
    yield "evm_txs", (len(raw), "0x" + keccak256(raw).hex())


ACCOUNT_COLUMNS = {
    "scheduled_cancels": ("at_ms",),
    "twaps": ("asset", "is_buy", "sz", "reduce_only", "minutes", "randomize", "twap_id",
              "status", "error"),
    "margin": ("asset", "is_cross", "leverage", "is_buy", "amount_usd", "raw_amount"),
    "evm_txs": ("size", "tx_hash"),
}  # fmt: skip

ACCOUNT_ACTIONS = {
    "scheduleCancel": schedule_cancel,
    "twapOrder": twap_order,
    "twapCancel": twap_cancel,
    "updateLeverage": leverage,
    "updateIsolatedMargin": isolated_margin,
    "evmRawTx": evm_raw_tx,
}
