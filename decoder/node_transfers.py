"""Transfers between accounts, and between an account's own balances, as ``transfers`` rows.

``amount`` is in the token's units (dollars for USDC); ``raw_amount`` keeps an integer amount as
the action writes it: ``usd`` in millionths of USDC, ``wei`` in the token's smallest unit (whose
decimals the action does not say, so ``amount`` is null for ``cDeposit``/``cWithdraw``).
``destination`` is null where the transfer stays in the user's own account (spot and perp
balances, staking), and ``subaccount`` names the subaccount or vault moved for or with.
"""

from __future__ import annotations

from typing import Any

import msgspec
from replica.decoder.node_values import Facts, Float, decoder, lower, millionths


class _Send(msgspec.Struct):
    destination: str | None = None
    token: str | None = None
    amount: Float = None
    time: int | None = None
    nonce: int | None = None


class _ClassTransfer(msgspec.Struct):
    amount: str | float
    toPerp: bool | None = None  # the node's names
    nonce: int | None = None


class _VaultTransfer(msgspec.Struct):
    vaultAddress: str
    isDeposit: bool
    usd: int


class _SubAccountTransfer(msgspec.Struct):
    subAccountUser: str
    isDeposit: bool
    usd: int | None = None
    token: str | None = None
    amount: Float = None


class _SendAsset(msgspec.Struct):
    destination: str
    token: str | None = None
    amount: Float = None
    sourceDex: str | None = None
    destinationDex: str | None = None
    fromSubAccount: str | None = None
    nonce: int | None = None


class _Staking(msgspec.Struct):
    wei: int
    nonce: int | None = None


_decode_send = decoder(_Send)
_decode_class_transfer = decoder(_ClassTransfer)
_decode_vault_transfer = decoder(_VaultTransfer)
_decode_sub_account_transfer = decoder(_SubAccountTransfer)
_decode_send_asset = decoder(_SendAsset)
_decode_staking = decoder(_Staking)

_SUBACCOUNT = " subaccount:"


def _row(
    destination: str | None,
    token: str | None,
    amount: float | None,
    nonce: int | None,
    raw_amount: int | None = None,
    to_perp: bool | None = None,
    is_deposit: bool | None = None,
    subaccount: str | None = None,
    source_dex: str | None = None,
    destination_dex: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    return "transfers", (destination, token, amount, nonce, raw_amount, to_perp, is_deposit,
                         subaccount, source_dex, destination_dex)  # fmt: skip


def send(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    transfer = _decode_send(action)
    nonce = transfer.time if transfer.time is not None else transfer.nonce
    yield _row(lower(transfer.destination), transfer.token, transfer.amount, nonce)


def class_transfer(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """``amount`` is decimal text, followed by `` subaccount:0x...`` when the SDK signs it for
    a vault or subaccount."""
    transfer = _decode_class_transfer(action)
    text = str(transfer.amount)
    amount_text, _, subaccount = text.partition(_SUBACCOUNT)
    amount = float(amount_text)  # ValueError: the action's facts are undecoded
    yield _row(None, None, amount, transfer.nonce, to_perp=transfer.toPerp,
               subaccount=lower(subaccount) or None)  # fmt: skip


def vault_transfer(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """A withdrawal from the vault goes to the user."""
    transfer = _decode_vault_transfer(action)
    vault = lower(transfer.vaultAddress)
    destination = vault if transfer.isDeposit else user
    yield _row(destination, None, millionths(transfer.usd), None, transfer.usd,
               is_deposit=transfer.isDeposit, subaccount=vault)  # fmt: skip


def sub_account_transfer(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """``usd`` in millionths (subAccountTransfer) or ``token`` and ``amount``
    (subAccountSpotTransfer); a withdrawal from the subaccount goes to the user."""
    transfer = _decode_sub_account_transfer(action)
    sub = lower(transfer.subAccountUser)
    destination = sub if transfer.isDeposit else user
    amount = millionths(transfer.usd) if transfer.usd is not None else transfer.amount
    yield _row(destination, transfer.token, amount, None, transfer.usd,
               is_deposit=transfer.isDeposit, subaccount=sub)  # fmt: skip


def send_asset(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    transfer = _decode_send_asset(action)
    yield _row(lower(transfer.destination), transfer.token, transfer.amount, transfer.nonce,
               subaccount=lower(transfer.fromSubAccount), source_dex=transfer.sourceDex,
               destination_dex=transfer.destinationDex)  # fmt: skip


def staking_deposit(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """cDeposit: ``wei`` into the user's staking balance."""
    transfer = _decode_staking(action)
    yield _row(None, None, None, transfer.nonce, transfer.wei, is_deposit=True)


def staking_withdrawal(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """cWithdraw: ``wei`` out of the user's staking balance."""
    transfer = _decode_staking(action)
    yield _row(None, None, None, transfer.nonce, transfer.wei, is_deposit=False)


TRANSFER_ACTIONS = {
    "usdSend": send,
    "spotSend": send,
    "usdClassTransfer": class_transfer,
    "vaultTransfer": vault_transfer,
    "subAccountTransfer": sub_account_transfer,
    "subAccountSpotTransfer": sub_account_transfer,
    "sendAsset": send_asset,
    "cDeposit": staking_deposit,
    "cWithdraw": staking_withdrawal,
}
