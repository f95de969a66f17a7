"""The frame of a node's JSON block, read by msgspec into typed structs in one C pass, each
action and response left as raw JSON; and an action's own fields (type, nonce, vault, expiry),
read so that a bad one costs that value only.

A block whose frame is not what the node writes is not a block (``NotABlock``); a signed action
that is not an object is read as an empty one, so that it still has its ``actions`` row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from replica.decoder.node_values import json_array, lower
from replica.schemas.nodetime import block_time_ns

# Raw JSON fields: absent reads as null. (msgspec takes no ``Raw | None``.)
NULL = msgspec.Raw(b"null")

# Integers are read as any int, whatever their column: whether one fits (a uint64 round, a
# uint32 asset) is checked where rows become columns (``columns.arrays``), for every value alike
# (in ``node_facts`` too).


class NotABlock(ValueError):
    """The payload is not a node block; the message says why."""


# --- the block's frame, as the node writes it --------------------------------------------------


class SignedAction(msgspec.Struct):
    """The fields beside the action are checked with it (``own_fields``), so that a bad one
    costs that value only."""

    action: msgspec.Raw = NULL
    nonce: msgspec.Raw = NULL
    vaultAddress: msgspec.Raw = NULL  # the node's names
    expiresAfter: msgspec.Raw = NULL


class TypedSignedAction(msgspec.Struct):
    """A signed action whose fields beside the action are what they should be, as nearly all
    are: read with the frame, in its one C pass (``read_block`` tries this frame first)."""

    action: msgspec.Raw = NULL
    nonce: int | None = None
    vaultAddress: str | None = None  # the node's names
    expiresAfter: int | None = None


AnySignedAction = SignedAction | TypedSignedAction


class _SignedFields(msgspec.Struct, array_like=True):
    nonce: int | None
    vault: str | None
    expires_after: int | None


class Bundle(msgspec.Struct):
    signed_actions: list[SignedAction]
    broadcaster: str | None = None
    broadcaster_nonce: int | None = None


class TypedBundle(msgspec.Struct):
    signed_actions: list[TypedSignedAction]
    broadcaster: str | None = None
    broadcaster_nonce: int | None = None


class LooseBundle(msgspec.Struct):
    """A bundle read again when some signed action in it is not an object: each is read alone."""

    signed_actions: list[msgspec.Raw]
    broadcaster: str | None = None
    broadcaster_nonce: int | None = None


class _AbciBlock(msgspec.Struct):
    time: str
    signed_action_bundles: list[tuple[str, Bundle]]
    round: int | None = None
    parent_round: int | None = None
    proposer: str | None = None
    hardfork: msgspec.Raw = NULL


class _TypedAbciBlock(msgspec.Struct):
    time: str
    signed_action_bundles: list[tuple[str, TypedBundle]]
    round: int | None = None
    parent_round: int | None = None
    proposer: str | None = None
    hardfork: msgspec.Raw = NULL


class _LooseAbciBlock(msgspec.Struct):
    time: str
    signed_action_bundles: list[tuple[str, LooseBundle]]
    round: int | None = None
    parent_round: int | None = None
    proposer: str | None = None
    hardfork: msgspec.Raw = NULL


class _Result(msgspec.Struct):
    status: str | None = None
    response: msgspec.Raw = NULL


class Response(msgspec.Struct):
    user: str | None = None
    res: _Result | None = None


class _Responses(msgspec.Struct):
    Full: list[tuple[str, list[Response]]]


class Block(msgspec.Struct):
    abci_block: _AbciBlock
    resps: _Responses | None = None


class TypedBlock(msgspec.Struct):
    abci_block: _TypedAbciBlock
    resps: _Responses | None = None


class LooseBlock(msgspec.Struct):
    abci_block: _LooseAbciBlock
    resps: _Responses | None = None


class _ActionType(msgspec.Struct):
    type: str


_decode_typed_block = msgspec.json.Decoder(TypedBlock).decode
_decode_block = msgspec.json.Decoder(Block).decode
_decode_loose_block = msgspec.json.Decoder(LooseBlock).decode
_decode_signed = msgspec.json.Decoder(SignedAction).decode
_decode_type = msgspec.json.Decoder(_ActionType).decode
_decode_types = msgspec.json.Decoder(list[_ActionType]).decode
_decode_signed_fields = msgspec.json.Decoder(_SignedFields).decode
_decode_int = msgspec.json.Decoder(int | None).decode
_decode_str = msgspec.json.Decoder(str | None).decode


def raw_text(raw: msgspec.Raw) -> str | None:
    text = bytes(raw).decode()
    return None if text == "null" else text


# What reading an action's own fields or its facts raises on a bad value: msgspec's errors and
# UnicodeDecodeError are ValueErrors, an integer beyond a float an OverflowError.
ACTION_ERRORS = (ValueError, ArithmeticError, TypeError, RecursionError)


def describe(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "a string is not UTF-8"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def action_types(actions: list[msgspec.Raw]) -> list[str]:
    """The type of each action, read in one pass (as ``own_fields`` reads one); raises
    ``msgspec.DecodeError`` if one has none."""
    return [action.type for action in _decode_types(json_array(actions))]


def _field(decode: Callable[[bytes], Any], raw: bytes, name: str, problems: list[str]) -> Any:
    """One value read alone, or None with why in ``problems``."""
    try:
        return decode(raw)
    except ACTION_ERRORS as exc:
        problems.append(f"{name}: {describe(exc)}")
        return None


def own_fields(signed: AnySignedAction) -> tuple[tuple[Any, ...], list[str]]:
    """An action's kind, nonce, vault, expiry and JSON text, each null where it cannot be read,
    and what could not be read. One pass for the usual action, value by value otherwise."""
    action = bytes(signed.action)
    if isinstance(signed, TypedSignedAction):
        try:
            kind = _decode_type(action).type
            return (kind, signed.nonce, lower(signed.vaultAddress), signed.expiresAfter,
                    action.decode()), []  # fmt: skip
        except ACTION_ERRORS:  # the action itself: read value by value, as any other
            return own_fields(raw_signed(signed))
    try:
        kind = _decode_type(action).type
        fields = _decode_signed_fields(
            b"[" + bytes(signed.nonce) + b"," + bytes(signed.vaultAddress) + b","
            + bytes(signed.expiresAfter) + b"]"
        )  # fmt: skip
        return (kind, fields.nonce, lower(fields.vault), fields.expires_after,
                action.decode()), []  # fmt: skip
    except ACTION_ERRORS:
        pass
    problems: list[str] = []
    typed = _field(_decode_type, action, "type", problems)
    nonce = _field(_decode_int, bytes(signed.nonce), "nonce", problems)
    vault = _field(_decode_str, bytes(signed.vaultAddress), "vaultAddress", problems)
    expires = _field(_decode_int, bytes(signed.expiresAfter), "expiresAfter", problems)
    text = _field(bytes.decode, action, "action", problems)
    type_ = typed.type if typed is not None else None
    return (type_, nonce, lower(vault), expires, None if text == "null" else text), problems


def raw_signed(signed: TypedSignedAction) -> SignedAction:
    """The same signed action with its fields beside the action as raw JSON."""
    encode = msgspec.json.encode
    return SignedAction(signed.action, msgspec.Raw(encode(signed.nonce)),
                        msgspec.Raw(encode(signed.vaultAddress)),
                        msgspec.Raw(encode(signed.expiresAfter)))  # fmt: skip


def signed_actions(
    bundle: TypedBundle | Bundle | LooseBundle,
) -> Iterator[tuple[AnySignedAction, str | None]]:
    """Each signed action of a bundle, and why it is not an object when it is not (then as an
    empty one)."""
    for signed in bundle.signed_actions:
        if isinstance(signed, SignedAction | TypedSignedAction):
            yield signed, None
            continue
        try:
            yield _decode_signed(signed), None
        except ACTION_ERRORS as exc:
            yield SignedAction(), f"signed action: {describe(exc)}"


def read_block(payload: bytes) -> TypedBlock | Block | LooseBlock:
    """The block's frame; raises ``NotABlock`` if the payload is not a block. Read again with
    each signed action's fields left raw when one of them is not what it should be, and again
    with each signed action left raw when one of them is not an object."""
    try:
        try:
            block: TypedBlock | Block | LooseBlock = _decode_typed_block(payload)
        except (ValueError, RecursionError):  # whatever it is, the frames below say
            try:
                block = _decode_block(payload)
            except msgspec.ValidationError:
                block = _decode_loose_block(payload)
        block_time_ns(block.abci_block.time)
        raw_text(block.abci_block.hardfork)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Object missing required field `abci_block`"):
            raise NotABlock("JSON but not a node block (no abci_block)") from None
        raise NotABlock(f"node block: {exc}") from None
    except msgspec.DecodeError as exc:
        raise NotABlock(f"not JSON: {exc}") from None
    except UnicodeDecodeError:
        raise NotABlock("node block: a string is not UTF-8") from None
    except RecursionError:
        raise NotABlock("node block: nested too deeply") from None
    except ValueError as exc:
        raise NotABlock(f"node block: {exc}") from None
    return block
