"""The hot action types of a node block, decoded a block at a time.

A busy mainnet block is a thousand signed actions, nearly all ``order``, ``cancelByCloid`` and
``cancel``. Read one by one, each costs several msgspec calls (its type, its fields, its
response) and their Python overhead, more than the JSON is worth. Here the actions of those
types in one block are decoded in one msgspec call into tagged structs, and their responses in
another, both in C; the rows are then built by the same functions the general path uses
(``node_orders``), so they are the same rows.

An action is taken for one of these types when its JSON starts as the node writes them
(``{"type":"order",``...); the typed decode then checks that it is. Whatever this path cannot
read (an action that is not what its type promises, a duplicate key, text that is not UTF-8) is
left to the general path (``None``), which reads it alone and says what is wrong with it: the
fast path never decides that something is wrong, so it never changes a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from replica.decoder.node_frame import ACTION_ERRORS, AnySignedAction, TypedSignedAction
from replica.decoder.node_orders import (
    CancelAction,
    CancelByCloidAction,
    OrderAction,
    StatusResponse,
    cancel_by_cloid_rows,
    cancel_rows,
    order_rows,
    statuses,
    statuses_of,
)


class _Order(OrderAction, tag_field="type", tag="order"):
    pass


class _Cancel(CancelAction, tag_field="type", tag="cancel"):
    pass


class _CancelByCloid(CancelByCloidAction, tag_field="type", tag="cancelByCloid"):
    pass


_Hot = _Order | _Cancel | _CancelByCloid
# strict=False as the general path's decoders (``node_values.decoder``): numbers as text.
_decode_hot_list = msgspec.json.Decoder(list[_Hot], strict=False).decode
_decode_hot = msgspec.json.Decoder(_Hot, strict=False).decode
_decode_statuses_list = msgspec.json.Decoder(list[StatusResponse | str | None]).decode

# How the node starts each hot action's JSON: a cheap test that picks the candidates.
HOT_PREFIXES = (b'{"type":"order",', b'{"type":"cancel",', b'{"type":"cancelByCloid",')

# Per hot type: its kind, the table of its facts, and their rows (``node_orders``).
_FACTS: dict[type, tuple[str, str, Callable[[Any, list[Any]], list[tuple[Any, ...]]]]] = {
    _Order: ("order", "orders", order_rows),
    _Cancel: ("cancel", "cancels", cancel_rows),
    _CancelByCloid: ("cancelByCloid", "cancels", cancel_by_cloid_rows),
}
_NO_ROWS: list[tuple[Any, ...]] = []

# What is read of a hot action: kind, nonce, vault, expiry, JSON text, response text, the
# table of its facts and their rows (fact columns only).
HotRead = tuple[str, int | None, str | None, int | None, str, str | None, str,
                list[tuple[Any, ...]]]  # fmt: skip


def _joined(items: Sequence[bytes | msgspec.Raw]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def _each_action(actions: Sequence[bytes]) -> list[Any]:
    """The actions one by one, None for one this path cannot read (a batch failed)."""
    parsed: list[Any] = []
    for action in actions:
        try:
            parsed.append(_decode_hot(action))
        except ACTION_ERRORS:
            parsed.append(None)
    return parsed


def _statuses(responses: Sequence[msgspec.Raw]) -> list[list[Any]]:
    """Each response's statuses, as ``node_orders.statuses`` reads them."""
    try:
        return [statuses_of(parsed) for parsed in _decode_statuses_list(_joined(responses))]
    except ACTION_ERRORS:
        return [statuses(response) for response in responses]


# A top-level action as NodeColumns reads it: its signed action, what is wrong with it, and the
# user, status and response the node gave it.
Pending = tuple[AnySignedAction, list[str], str | None, str | None, msgspec.Raw]


def read_hot(top: Sequence[Pending]) -> dict[int, HotRead]:
    """What this path reads of a block's top-level actions: by idx, for the hot actions it can
    read; the others are left to the general path. A rejected action (status "err") placed
    nothing: no facts, as in the general path."""
    at: list[int] = []
    texts: list[bytes] = []
    typed: list[TypedSignedAction] = []
    for idx, (one, problems, _, _, _) in enumerate(top):
        if isinstance(one, TypedSignedAction) and not problems:
            action = bytes(one.action)
            if action.startswith(HOT_PREFIXES):
                at.append(idx)
                texts.append(action)
                typed.append(one)
    if not at:
        return {}
    try:
        parsed = _decode_hot_list(_joined(texts))
    except ACTION_ERRORS:
        parsed = _each_action(texts)
    placed = [i for i, idx in enumerate(at) if top[idx][3] != "err"]
    outcomes: list[list[Any] | None] = [None] * len(at)
    for i, found in zip(placed, _statuses([top[at[i]][4] for i in placed]), strict=True):
        outcomes[i] = found
    read: dict[int, HotRead] = {}
    for idx, one, text, hot, outcome in zip(at, typed, texts, parsed, outcomes, strict=True):
        if hot is None:
            continue
        kind, table, rows_of = _FACTS[type(hot)]
        try:  # what the general path would say is wrong, it says
            rows = rows_of(hot, outcome) if outcome is not None else _NO_ROWS
            text_ = text.decode()
            response = bytes(top[idx][4])
            response_text = None if response == b"null" else response.decode()
        except ACTION_ERRORS:
            continue
        vault = one.vaultAddress
        read[idx] = (kind, one.nonce, vault.lower() if vault else None, one.expiresAfter,
                     text_, response_text, table, rows)  # fmt: skip
    return read
