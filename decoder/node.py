"""A node's JSON block (one replica_cmds line) into rows.

The node writes a block as ``{"abci_block": {...}, "resps": null | {"Full": [...]}}``: bundles of
signed actions, and per bundle the node's responses, one per action. Every action becomes a row
of ``actions`` with its JSON kept whole, byte for byte; the actions that carry a fact the
protobuf contract also carries (orders, cancels, oracle prices, withdrawals, deposits) also
become rows of that fact's table, under the same column names, so a table holds the same fact
whichever form it came from.

Prices and sizes are decimal strings in the node's JSON; they become float64 like the protobuf
doubles (the exact strings stay in ``actions.action``). Optional fields are sometimes absent and
sometimes null, and both read as null.

The block's frame is decoded by msgspec into typed structs in one C pass, leaving each action
and response as raw JSON; only the actions that carry a fact are parsed further. A regular block
has them parsed a type at a time (``node_batch``); any other, action by action. A block whose
frame is not what the node writes is not a block (``NotABlock``). Nothing wrong with one action
spoils its block, each leaving one ``undecoded`` row that names the action (its ``idx``) and says
why. Every signed action keeps its ``actions`` row whatever is wrong with it: a type, nonce,
vault or expiry that cannot be read (or that no column can hold) is null in it; facts that
cannot be read (a field not what its type promises, a value no column can hold) are lost, the
row and its JSON are not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from replica.decoder.node_batch import batched_rows
from replica.decoder.node_facts import FACT_COLUMNS, FACT_KEYS, FACTS_OF_ACTION
from replica.decoder.node_frame import (
    ACTION_ERRORS,
    NULL,
    AnySignedAction,
    Block,
    LooseBlock,
    SignedAction,
    TypedBlock,
    TypedSignedAction,
    describe,
    own_fields,
    raw_signed,
    raw_text,
    read_block,
    signed_actions,
)
from replica.decoder.node_values import lower
from replica.schemas.decoded import ACTIONS_SCHEMA, BLOCKS_SCHEMA
from replica.schemas.nodetime import block_time_ns

Row = dict[str, Any]


def _facts(
    kind: str, action: bytes, user: str | None, status: str | None, response: msgspec.Raw
) -> list[tuple[str, tuple[Any, ...]]]:
    """The facts an action carries. A rejected action (status "err") placed nothing: none."""
    handler = FACTS_OF_ACTION.get(kind) if status != "err" else None
    return list(handler(action, user, response)) if handler is not None else []


def _undecoded(seq: int, idx: int, time_ms: int, reason: str, size: int) -> Row:
    return {"seq": seq, "idx": idx, "time_ms": time_ms, "reason": reason, "size": size}


# --- blocks into columns ------------------------------------------------------------------------

# The order of each table's tuples: its schema's.
BLOCK_COLUMNS = tuple(BLOCKS_SCHEMA.names)
ACTION_COLUMNS = tuple(ACTIONS_SCHEMA.names)


class _MultiSigPayload(msgspec.Struct):
    multiSigUser: str | None = None  # the node's names
    action: msgspec.Raw = NULL


class _MultiSig(msgspec.Struct):
    payload: _MultiSigPayload


_decode_multi_sig = msgspec.json.Decoder(_MultiSig).decode


def _wrapped(signed: AnySignedAction, status: str | None, response: msgspec.Raw) -> _Pending:
    """The action a multiSig wraps, as if it stood alone: signed for the multiSigUser, with the
    outer action's nonce, vault, expiry and response (the node answers for the inner action)."""
    payload = _decode_multi_sig(bytes(signed.action)).payload
    if isinstance(signed, TypedSignedAction):
        signed = raw_signed(signed)
    inner = SignedAction(payload.action, signed.nonce, signed.vaultAddress, signed.expiresAfter)
    return inner, [], lower(payload.multiSigUser), status, response


# Blocks of fewer signed actions are read action by action: below this, reading a type at a
# time costs more in calls than it saves (measured on one core: 18 against 9 µs for one action,
# 57 against 66 µs for 8, 650 against 1,060 µs for 128).
BATCHED_FROM_ACTIONS = 8


def _actions(block: TypedBlock) -> int:
    return sum(len(bundle.signed_actions) for _, bundle in block.abci_block.signed_action_bundles)


# An action's place: seq, time_ms, block round, bundle hash, broadcaster, broadcaster nonce.
_Place = tuple[int, int, int | None, str, str | None, int | None]
# An action to add: its signed fields, and the user, status and response it was given.
_Pending = tuple[AnySignedAction, list[str], str | None, str | None, msgspec.Raw]


class NodeColumns:
    """The rows of the node blocks of a batch, per table, each a tuple of the table's columns
    (``BLOCK_COLUMNS``, ``ACTION_COLUMNS``, ``FACT_KEYS`` + ``FACT_COLUMNS``): one append per
    row, and one ``zip`` turns a table's rows into its columns. A fact's tuple ends with one
    more value, the idx of its action, so that ``set_aside`` can find an action's facts.

    Every signed action has its ``actions`` row, whatever is wrong with it: the block's
    ``actions`` count is the number of its top-level rows (idx 0 to count - 1); the actions
    inside a ``multiSig`` follow, from idx count on. What could not be read leaves one
    ``undecoded`` row per action (same seq and idx) saying what and why.

    The seqs of the blocks of one batch are distinct, as in an archive."""

    def __init__(self) -> None:
        self.blocks: list[tuple[Any, ...]] = []
        self.actions: list[tuple[Any, ...]] = []
        self.facts: dict[str, list[tuple[Any, ...]]] = {}
        self._undecoded: dict[tuple[int, int], Row] = {}
        self._payloads: dict[int, tuple[int, int]] = {}  # seq -> archive ts_ms, payload size

    @property
    def undecoded(self) -> list[Row]:
        return list(self._undecoded.values())

    def not_a_block(self, seq: int, ts_ms: int, payload: bytes, why: str) -> None:
        self._undecoded[seq, 0] = _undecoded(seq, 0, ts_ms, why, len(payload))

    def note(self, seq: int, idx: int, time_ms: int, kind: str | None, why: str) -> None:
        """Say why something of action ``idx`` was not decoded: one row per action."""
        row = self._undecoded.get((seq, idx))
        if row is not None:
            row["reason"] += f"; {why}"
            return
        reason = f"node action {idx}: {kind if kind is not None else '(no type)'}: {why}"
        self._undecoded[seq, idx] = _undecoded(seq, idx, time_ms, reason, self._payloads[seq][1])

    def add(self, seq: int, ts_ms: int, payload: bytes) -> None:
        """Add one block's rows; raises ``NotABlock`` (adding nothing) if it is not one."""
        block = read_block(payload)
        abci = block.abci_block
        time_ns = block_time_ns(abci.time)
        self._payloads[seq] = (ts_ms, len(payload))
        time_ms = time_ns // 1_000_000
        batched = None
        if isinstance(block, TypedBlock) and _actions(block) >= BATCHED_FROM_ACTIONS:
            batched = batched_rows(block, seq, time_ms)
        if batched is not None:
            actions, facts = batched
            self.actions += actions
            for table, rows in facts.items():
                self.facts.setdefault(table, []).extend(rows)
            top_level = len(actions)
        else:
            top_level = self._add_actions(seq, time_ms, block)
        self.blocks.append(
            (seq, 0, time_ms, abci.round, time_ns, abci.parent_round, lower(abci.proposer),
             raw_text(abci.hardfork), len(abci.signed_action_bundles), top_level,
             block.resps is not None)
        )  # fmt: skip

    def _add_actions(self, seq: int, time_ms: int, block: TypedBlock | Block | LooseBlock) -> int:
        """Add a block's actions one by one, each read on its own (``own_fields``, ``_facts``),
        which says what is wrong with each; returns the number of top-level actions."""
        abci = block.abci_block
        responses = dict(block.resps.Full) if block.resps is not None else {}
        counts: dict[str, int] = {}
        inner: list[tuple[_Place, int, _Pending]] = []
        idx = 0
        for bundle_hash, bundle in abci.signed_action_bundles:
            results = responses.get(bundle_hash, ())
            place = (seq, time_ms, abci.round, bundle_hash.lower(), lower(bundle.broadcaster),
                     bundle.broadcaster_nonce)  # fmt: skip
            for position, (signed, broken) in enumerate(signed_actions(bundle)):
                user = status = None
                response = NULL
                if position < len(results):
                    result = results[position]
                    user = lower(result.user)
                    if result.res is not None:
                        status, response = result.res.status, result.res.response
                pending = (signed, [broken] if broken else [], user, status, response)
                wrapped = self._action(place, idx, None, pending, counts)
                if wrapped is not None:
                    inner.append((place, idx, wrapped))
                idx += 1
        next_idx = idx
        while inner:  # a multiSig's action, and any inside it, after all top-level actions
            place, outer, pending = inner.pop(0)
            wrapped = self._action(place, next_idx, outer, pending, counts)
            if wrapped is not None:
                inner.append((place, next_idx, wrapped))
            next_idx += 1
        return idx

    def _action(
        self, place: _Place, idx: int, outer: int | None, pending: _Pending, counts: dict[str, int]
    ) -> _Pending | None:
        """Add one action's row and facts; the action a multiSig wraps, if it is one."""
        signed, problems, user, status, response = pending
        seq, time_ms, round_ = place[0], place[1], place[2]
        (kind, nonce, vault, expires, text), more = own_fields(signed)
        for why in problems or more:  # a signed action not an object: that alone
            self.note(seq, idx, time_ms, kind, why)
        try:
            response_text = raw_text(response)
        except UnicodeDecodeError:
            response_text = None
            self.note(seq, idx, time_ms, kind, "response: a string is not UTF-8")
        facts: list[tuple[str, tuple[Any, ...]]] = []
        wrapped: _Pending | None = None
        if kind is not None:
            action = bytes(signed.action)
            try:
                facts = _facts(kind, action, user, status, response)
                if kind == "multiSig":
                    wrapped = _wrapped(signed, status, response)
            except ACTION_ERRORS as exc:
                self.note(seq, idx, time_ms, kind, describe(exc))
        for table, values in facts:
            fact_idx = counts.get(table, 0)
            counts[table] = fact_idx + 1
            keys = (seq, fact_idx, time_ms, kind, round_, user)
            self.facts.setdefault(table, []).append((*keys, *values, idx))
        self.actions.append(
            (seq, idx, time_ms, kind, round_, *place[3:], nonce, vault, expires, user, status,
             response_text, text, len(facts), outer)
        )  # fmt: skip
        return wrapped

    def tables(self) -> Iterator[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        """Each table's name, columns and rows (a fact's rows with its action's idx beyond)."""
        yield "blocks", BLOCK_COLUMNS, self.blocks
        yield "actions", ACTION_COLUMNS, self.actions
        for table, rows in self.facts.items():
            yield table, FACT_KEYS + FACT_COLUMNS[table], rows

    def set_aside(self, table: str, misfits: dict[int, str], columns: dict[int, int]) -> None:
        """Deal with the rows of ``table`` (by index) that hold a value their column cannot
        hold (``columns``: which), leaving an undecoded row that says why: a fact costs its
        action's facts in that table, an action that value (null), a block all of its rows."""
        if table == "blocks":
            blocks = self.blocks
            self._set_aside_blocks({blocks[r][0]: f"blocks.{why}" for r, why in misfits.items()})
            return
        if table == "actions":
            for r, why in misfits.items():
                row = self.actions[r]
                self.actions[r] = (*row[: columns[r]], None, *row[columns[r] + 1 :])
                self.note(row[0], row[1], row[2], row[3], f"actions.{why}")
            return
        rows = self.facts[table]
        spoiled = {
            (rows[r][0], rows[r][-1]): (rows[r][2], rows[r][3], why) for r, why in misfits.items()
        }
        self.facts[table] = [row for row in rows if (row[0], row[-1]) not in spoiled]
        for (seq, idx), (time_ms, kind, why) in spoiled.items():
            self.note(seq, idx, time_ms, kind, f"{table}.{why}")
        gone = {key: 0 for key in spoiled}
        for facts in self.facts.values():
            for row in facts:
                if (row[0], row[-1]) in gone:
                    gone[row[0], row[-1]] += 1
        at = ACTION_COLUMNS.index("facts")
        for r, row in enumerate(self.actions):
            if (row[0], row[1]) in gone:
                self.actions[r] = (*row[:at], gone[row[0], row[1]], *row[at + 1 :])

    def _set_aside_blocks(self, spoiled: dict[int, str]) -> None:
        """Blocks (by seq) become one undecoded row each, as a payload that is not a block."""
        self.blocks = [row for row in self.blocks if row[0] not in spoiled]
        self.actions = [row for row in self.actions if row[0] not in spoiled]
        for name, facts in self.facts.items():
            self.facts[name] = [row for row in facts if row[0] not in spoiled]
        self._undecoded = {key: u for key, u in self._undecoded.items() if key[0] not in spoiled}
        for seq, why in spoiled.items():
            ts_ms, size = self._payloads[seq]
            self._undecoded[seq, 0] = _undecoded(seq, 0, ts_ms, f"node block: {why}", size)
