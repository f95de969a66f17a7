"""The facts a node action carries, as rows of the tables the protobuf facts go to.

Each handler of ``FACTS_OF_ACTION`` takes an action's JSON (with the user and response the node
gave it) and yields ``(table, values)``, the values in the order of ``FACT_COLUMNS[table]``.
Orders and cancels are in ``node_orders``, transfers in ``node_transfers``, standing orders,
margin and HyperEVM transactions in ``node_account``; oracle prices,
withdrawals and deposits here.
"""

from __future__ import annotations

from typing import Any

import msgspec
from replica.decoder.node_account import ACCOUNT_ACTIONS, ACCOUNT_COLUMNS
from replica.decoder.node_orders import ORDER_ACTIONS, ORDER_COLUMNS
from replica.decoder.node_transfers import TRANSFER_ACTIONS
from replica.decoder.node_values import Facts, Float, Handler, decoder, lower, millionths, uint64
from replica.schemas.decoded import TRANSFERS_SCHEMA

# Prices by coin name: [[coin, px], ...] as the SDK sorts a mapping, or the mapping itself.
_CoinPxs = list[tuple[str, Float]] | dict[str, Float]


class _OracleAction(msgspec.Struct):
    # Per asset index: a pair whose first element may be null, a bare price, or null.
    pxs: list[list[Float] | Float] = []
    nativePx: Float = None  # the node's names
    usdtUsdcPx: Float = None
    externalPerpPxs: _CoinPxs | None = None


class _SetOracle(msgspec.Struct):
    dex: str | None = None
    oraclePxs: _CoinPxs | None = None
    markPxs: list[_CoinPxs] | None = None
    externalPerpPxs: _CoinPxs | None = None


class _PerpDeploy(msgspec.Struct):
    setOracle: _SetOracle | None = None


class _Withdrawal(msgspec.Struct):
    destination: str
    amount: float
    time: int | None = None


class _WithdrawalVote(msgspec.Struct):
    """ValidatorSignWithdrawalAction and VoteEthFinalizedWithdrawalAction: a validator's vote
    on a user's withdrawal."""

    user: str | None = None
    destination: str | None = None
    usd: Any = None  # millionths of USDC, an integer
    nonce: int | None = None
    ethTxHash: str | None = None  # the node's names; finalized votes only


class _Deposit(msgspec.Struct):
    user: str | None = None
    usd: Any = None  # millionths of USDC, an integer
    ethId: dict[str, Any] | None = None  # the Ethereum event voted for
    ethTxHash: str | None = None  # an older rendering: the hash alone


_decode_oracle = decoder(_OracleAction)
_decode_perp_deploy = decoder(_PerpDeploy)
_decode_withdrawal = decoder(_Withdrawal)
_decode_withdrawal_vote = decoder(_WithdrawalVote)
_decode_deposit = decoder(_Deposit)


def _oracle_row(
    user: str | None,
    asset: int | None,
    px: float | None,
    source: str,
    px_2: float | None = None,
    coin: str | None = None,
    dex: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    return "oracle", (user, asset, px, source, px_2, coin, dex)


def _by_coin(user: str | None, pxs: _CoinPxs | None, source: str, dex: str | None) -> Facts:
    for coin, px in pxs.items() if isinstance(pxs, dict) else pxs or ():
        if px is not None:
            yield _oracle_row(user, None, px, source, coin=coin, dex=dex)


def _oracle(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """Every asset with a price, whichever element of its pair holds it: ``px`` is the pair's
    first element (or the bare price), ``px_2`` its second."""
    prices = _decode_oracle(action)
    for asset, px in enumerate(prices.pxs):
        if isinstance(px, list):
            first = px[0] if px else None
            second = px[1] if len(px) > 1 else None
            if first is not None or second is not None:
                yield _oracle_row(user, asset, first, "pxs", second)
        elif px is not None:
            yield _oracle_row(user, asset, px, "pxs")
    for source, px in (("nativePx", prices.nativePx), ("usdtUsdcPx", prices.usdtUsdcPx)):
        if px is not None:
            yield _oracle_row(user, None, px, source)
    yield from _by_coin(user, prices.externalPerpPxs, "externalPerpPxs", None)


def _perp_deploy(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """A HIP-3 dex's deployer setting its prices (``setOracle``); other perpDeploys: none."""
    oracle = _decode_perp_deploy(action).setOracle
    if oracle is None:
        return
    yield from _by_coin(user, oracle.oraclePxs, "oraclePxs", oracle.dex)
    for marks in oracle.markPxs or ():
        yield from _by_coin(user, marks, "markPxs", oracle.dex)
    yield from _by_coin(user, oracle.externalPerpPxs, "externalPerpPxs", oracle.dex)


def _withdrawal(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """A user's own withdrawal request: the signer is the withdrawer."""
    withdrawal = _decode_withdrawal(action)
    yield "withdrawals", (lower(withdrawal.destination), withdrawal.amount, withdrawal.time,
                          user, None)  # fmt: skip


def _withdrawal_vote(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """One validator's vote (the signer, ``user``) on a withdrawal: several per withdrawal (the
    ``withdrawal_events`` view counts each once)."""
    vote = _decode_withdrawal_vote(action)
    yield "withdrawals", (lower(vote.destination), millionths(vote.usd), vote.nonce,
                          lower(vote.user), lower(vote.ethTxHash))  # fmt: skip


# The ethId's keys, short and long: block number, tx index, event type, event index, tx hash.
_ETH_ID_KEYS = (("b", "block_number"), ("t", "tx_index"), ("e", "event_type"),
                ("i", "event_index"), ("h", "tx_hash"))  # fmt: skip


def _deposit(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """One validator's vote (the action's signer, ``user``) for a deposit: several votes per
    deposit, told apart by the ethId (the ``deposit_events`` view counts each deposit once)."""
    deposit = _decode_deposit(action)
    eth_id = deposit.ethId or {}
    block, tx_index, event, event_index, tx_hash = (
        eth_id.get(short, eth_id.get(long)) for short, long in _ETH_ID_KEYS
    )
    tx_hash = tx_hash if isinstance(tx_hash, str) else deposit.ethTxHash
    yield "deposits", (lower(deposit.user), millionths(deposit.usd), lower(tx_hash),
                       uint64(block), uint64(tx_index), event if isinstance(event, str) else None,
                       uint64(event_index))  # fmt: skip


FACT_COLUMNS = {
    **ORDER_COLUMNS,
    **ACCOUNT_COLUMNS,
    "oracle": ("validator", "asset", "px", "source", "px_2", "coin", "dex"),
    "withdrawals": ("destination", "amount_usd", "nonce", "withdrawer", "eth_tx_hash"),
    "deposits": ("depositor", "amount_usd", "eth_tx_hash", "eth_block_number", "eth_tx_index",
                 "eth_event_type", "eth_event_index"),
}  # fmt: skip
FACT_KEYS = ("seq", "idx", "time_ms", "kind", "block", "user")
FACT_COLUMNS["transfers"] = tuple(TRANSFERS_SCHEMA.names[len(FACT_KEYS) :])

FACTS_OF_ACTION: dict[str, Handler] = {
    **ORDER_ACTIONS,
    "SetGlobalAction": _oracle,
    "perpDeploy": _perp_deploy,
    "withdraw3": _withdrawal,
    "ValidatorSignWithdrawalAction": _withdrawal_vote,
    "VoteEthFinalizedWithdrawalAction": _withdrawal_vote,
    "VoteEthDepositAction": _deposit,
    **TRANSFER_ACTIONS,
    **ACCOUNT_ACTIONS,
}
