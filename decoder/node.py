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
and response as raw JSON; only the actions that carry a fact are parsed further. A block whose
frame is not what the node writes is not a block (``NotABlock``). Nothing wrong with one action
spoils its block, each leaving an ``undecoded`` row that names the action (its ``idx``) and says
why: an action without a readable type, nonce, vault or expiry has no ``actions`` row; one whose
facts cannot be read (a field not what its type promises, a value no column can hold) keeps its
``actions`` row, JSON and all, and only its facts are lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from replica.decoder.node_facts import FACT_COLUMNS, FACT_KEYS, FACTS_OF_ACTION, lower
from replica.schemas.decoded import ACTIONS_SCHEMA, BLOCKS_SCHEMA
from replica.schemas.nodetime import block_time_ns

Row = dict[str, Any]

# Raw JSON fields: absent reads as null. (msgspec takes no ``Raw | None``.)
_NULL = msgspec.Raw(b"null")

# Integers are read as any int, whatever their column: whether one fits (a uint64 round, a
# uint32 asset) is checked where rows become columns (``columns.arrays``), for every value alike
# (in ``node_facts`` too).


class NotABlock(ValueError):
    """The payload is not a node block; the message says why."""


# --- the block's frame, as the node writes it --------------------------------------------------


class _SignedAction(msgspec.Struct):
    """The fields beside the action are checked with it (``_SignedFields``), so that a bad one
    costs that action only."""

    action: msgspec.Raw
    nonce: msgspec.Raw = _NULL
    vaultAddress: msgspec.Raw = _NULL  # the node's names
    expiresAfter: msgspec.Raw = _NULL


class _SignedFields(msgspec.Struct, array_like=True):
    nonce: int | None
    vault: str | None
    expires_after: int | None


class _Bundle(msgspec.Struct):
    signed_actions: list[_SignedAction]
    broadcaster: str | None = None
    broadcaster_nonce: int | None = None


class _AbciBlock(msgspec.Struct):
    time: str
    signed_action_bundles: list[tuple[str, _Bundle]]
    round: int | None = None
    parent_round: int | None = None
    proposer: str | None = None
    hardfork: msgspec.Raw = _NULL


class _Result(msgspec.Struct):
    status: str | None = None
    response: msgspec.Raw = _NULL


class _Response(msgspec.Struct):
    user: str | None = None
    res: _Result | None = None


class _Responses(msgspec.Struct):
    Full: list[tuple[str, list[_Response]]]


class _Block(msgspec.Struct):
    abci_block: _AbciBlock
    resps: _Responses | None = None


class _ActionType(msgspec.Struct):
    type: str


_decode_block = msgspec.json.Decoder(_Block).decode
_decode_type = msgspec.json.Decoder(_ActionType).decode
_decode_signed_fields = msgspec.json.Decoder(_SignedFields).decode


def _text(raw: msgspec.Raw) -> str | None:
    text = bytes(raw).decode()
    return None if text == "null" else text


# What reading an action's own fields or its facts raises on a bad value: msgspec's errors and
# UnicodeDecodeError are ValueErrors, an integer beyond a float an OverflowError.
_ACTION_ERRORS = (ValueError, ArithmeticError, TypeError, RecursionError)


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "a string is not UTF-8"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _action_row(
    signed: _SignedAction, user: str | None, status: str | None, response: msgspec.Raw
) -> tuple:
    """An action's own columns: kind, then nonce to action, as in ACTION_COLUMNS."""
    action = bytes(signed.action)
    kind = _decode_type(action).type
    fields = _decode_signed_fields(
        b"[" + bytes(signed.nonce) + b"," + bytes(signed.vaultAddress) + b","
        + bytes(signed.expiresAfter) + b"]"
    )  # fmt: skip
    return (kind, fields.nonce, lower(fields.vault), fields.expires_after, user, status,
            _text(response), action.decode())  # fmt: skip


def _facts(
    kind: str, signed: _SignedAction, user: str | None, status: str | None, response: msgspec.Raw
) -> list[tuple[str, tuple]]:
    """The facts an action carries. A rejected action (status "err") placed nothing: none."""
    handler = FACTS_OF_ACTION.get(kind) if status != "err" else None
    return list(handler(bytes(signed.action), user, response)) if handler is not None else []


def _undecoded(seq: int, idx: int, time_ms: int, reason: str, size: int) -> Row:
    return {"seq": seq, "idx": idx, "time_ms": time_ms, "reason": reason, "size": size}


# --- blocks into columns ------------------------------------------------------------------------

# The order of each table's tuples: its schema's.
BLOCK_COLUMNS = tuple(BLOCKS_SCHEMA.names)
ACTION_COLUMNS = tuple(ACTIONS_SCHEMA.names)


class NodeColumns:
    """The rows of the node blocks of a batch, per table, each a tuple of the table's columns
    (``BLOCK_COLUMNS``, ``ACTION_COLUMNS``, ``FACT_KEYS`` + ``FACT_COLUMNS``): one append per
    row, and one ``zip`` turns a table's rows into its columns. A fact's tuple ends with one
    more value, the idx of its action, so that ``set_aside`` can find an action's facts.

    The seqs of the blocks of one batch are distinct, as in an archive."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []
        self.actions: list[tuple] = []
        self.facts: dict[str, list[tuple]] = {}
        self.undecoded: list[Row] = []
        self._payloads: dict[int, tuple[int, int]] = {}  # seq -> archive ts_ms, payload size

    def add(self, seq: int, ts_ms: int, payload: bytes) -> None:
        """Add one block's rows; raises ``NotABlock`` (adding nothing) if it is not one."""
        try:
            block = _decode_block(payload)
            abci = block.abci_block
            time_ns = block_time_ns(abci.time)
            hardfork = _text(abci.hardfork)
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
        size = len(payload)
        self._payloads[seq] = (ts_ms, size)
        time_ms = time_ns // 1_000_000
        round_ = abci.round
        responses = dict(block.resps.Full) if block.resps is not None else {}
        add_action = self.actions.append
        idx = 0
        fact_counts: dict[str, int] = {}
        for bundle_hash, bundle in abci.signed_action_bundles:
            results = responses.get(bundle_hash, ())
            hash_text = bundle_hash.lower()
            broadcaster = lower(bundle.broadcaster)
            for position, signed in enumerate(bundle.signed_actions):
                user = status = None
                response = _NULL
                if position < len(results):
                    result = results[position]
                    user = lower(result.user)
                    if result.res is not None:
                        status, response = result.res.status, result.res.response
                try:
                    row = _action_row(signed, user, status, response)
                except _ACTION_ERRORS as exc:
                    reason = f"node action {idx}: {_describe(exc)}"
                    self.undecoded.append(_undecoded(seq, idx, time_ms, reason, size))
                    idx += 1
                    continue
                add_action((seq, idx, time_ms, row[0], round_, hash_text, broadcaster,
                            bundle.broadcaster_nonce, *row[1:]))  # fmt: skip
                kind = row[0]
                try:
                    facts = _facts(kind, signed, user, status, response)
                except _ACTION_ERRORS as exc:
                    reason = f"node action {idx}: {kind}: {_describe(exc)}"
                    self.undecoded.append(_undecoded(seq, idx, time_ms, reason, size))
                    facts = []
                for table, values in facts:
                    fact_idx = fact_counts.get(table, 0)
                    fact_counts[table] = fact_idx + 1
                    keys = (seq, fact_idx, time_ms, kind, round_, user)
                    self.facts.setdefault(table, []).append((*keys, *values, idx))
                idx += 1
        self.blocks.append(
            (seq, 0, time_ms, round_, time_ns, abci.parent_round, lower(abci.proposer),
             hardfork, len(abci.signed_action_bundles), idx, bool(responses))
        )  # fmt: skip

    def tables(self) -> Iterator[tuple[str, tuple[str, ...], list[tuple]]]:
        """Each table's name, columns and rows (a fact's rows with its action's idx beyond)."""
        yield "blocks", BLOCK_COLUMNS, self.blocks
        yield "actions", ACTION_COLUMNS, self.actions
        for table, rows in self.facts.items():
            yield table, FACT_KEYS + FACT_COLUMNS[table], rows

    def set_aside(self, table: str, misfits: dict[int, str]) -> None:
        """Take out the rows of ``table`` (by index) that hold a value their column cannot
        hold, with the rows that depend on them, leaving an undecoded row that says why: a
        fact costs its action's facts (the action keeps its row), an action its row and facts,
        a block all of its rows."""
        if table == "blocks":
            blocks = self.blocks
            self._set_aside_blocks({blocks[r][0]: f"blocks.{why}" for r, why in misfits.items()})
            return
        if table == "actions":
            rows = self.actions
            spoiled = {
                (rows[r][0], rows[r][1]): (rows[r][2], f"node action {rows[r][1]}: actions.{why}")
                for r, why in misfits.items()
            }
            self.actions = [row for row in rows if (row[0], row[1]) not in spoiled]
            self.undecoded = [u for u in self.undecoded if (u["seq"], u["idx"]) not in spoiled]
            for name, facts in self.facts.items():
                self.facts[name] = [row for row in facts if (row[0], row[-1]) not in spoiled]
        else:
            rows = self.facts[table]
            spoiled = {
                (rows[r][0], rows[r][-1]): (
                    rows[r][2],
                    f"node action {rows[r][-1]}: {rows[r][3]}: {table}.{why}",
                )
                for r, why in misfits.items()
            }
            self.facts[table] = [row for row in rows if (row[0], row[-1]) not in spoiled]
        for (seq, idx), (time_ms, reason) in spoiled.items():
            self.undecoded.append(_undecoded(seq, idx, time_ms, reason, self._payloads[seq][1]))

    def _set_aside_blocks(self, spoiled: dict[int, str]) -> None:
        """Blocks (by seq) become one undecoded row each, as a payload that is not a block."""
        self.blocks = [row for row in self.blocks if row[0] not in spoiled]
        self.actions = [row for row in self.actions if row[0] not in spoiled]
        for name, facts in self.facts.items():
            self.facts[name] = [row for row in facts if row[0] not in spoiled]
        self.undecoded = [u for u in self.undecoded if u["seq"] not in spoiled]
        for seq, why in spoiled.items():
            ts_ms, size = self._payloads[seq]
            self.undecoded.append(_undecoded(seq, 0, ts_ms, f"node block: {why}", size))
