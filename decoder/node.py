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

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from replica.schemas.decoded import ACTIONS_SCHEMA, BLOCKS_SCHEMA, TRANSFERS_SCHEMA
from replica.schemas.nodetime import block_time_ns

Row = dict[str, Any]

# Raw JSON fields: absent reads as null. (msgspec takes no ``Raw | None``.)
_NULL = msgspec.Raw(b"null")

# Integers are read as any int, whatever their column: whether one fits (a uint64 round, a
# uint32 asset) is checked where rows become columns (``columns.arrays``), for every value alike.


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


# --- facts carried by actions: typed structs decoded in C -----------------------------------
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


def _lower(text: str | None) -> str | None:
    return text.lower() if text else None


def _order(order: _Order, oid: Any) -> tuple:
    """An orders row's fact columns (see FACT_COLUMNS)."""
    kind = order.t
    limit = kind.limit if kind is not None else None
    trigger = kind.trigger if kind is not None else None
    tif = limit.tif.upper() if limit is not None and limit.tif else None
    if trigger is None:
        return (order.a, order.b, order.p, order.s, order.r, tif, None, None, None,
                _lower(order.c), oid)  # fmt: skip
    return (order.a, order.b, order.p, order.s, order.r, tif, trigger.triggerPx,
            trigger.isMarket, trigger.tpsl == "tp" if trigger.tpsl else None, _lower(order.c),
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
        yield "cancels", (cancel.asset, None, _lower(cancel.cloid))


def _oracle(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    for asset, px in enumerate(_decode_oracle(action).pxs):
        oracle = (px[0] if px else None) if isinstance(px, list) else px
        if oracle is not None:
            yield "oracle", (user, asset, oracle)


def _withdrawal(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    withdrawal = _decode_withdrawal(action)
    yield "withdrawals", (_lower(withdrawal.destination), withdrawal.amount, withdrawal.time)


def _deposit(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    deposit = _decode_deposit(action)
    yield "deposits", (_lower(deposit.user), deposit.usd, _lower(deposit.ethTxHash))


def _transfer(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    transfer = _decode_transfer(action)
    nonce = transfer.time if transfer.time is not None else transfer.nonce
    yield "transfers", (_lower(transfer.destination), transfer.token, transfer.amount, nonce)


def _vault_transfer(action: bytes, user: str | None, response: msgspec.Raw) -> Facts:
    """``usd`` is in millionths of a dollar; a withdrawal from the vault goes to the user."""
    transfer = _decode_vault_transfer(action)
    destination = _lower(transfer.vaultAddress) if transfer.isDeposit else user
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
    return (kind, fields.nonce, _lower(fields.vault), fields.expires_after, user, status,
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
            broadcaster = _lower(bundle.broadcaster)
            for position, signed in enumerate(bundle.signed_actions):
                user = status = None
                response = _NULL
                if position < len(results):
                    result = results[position]
                    user = _lower(result.user)
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
            (seq, 0, time_ms, round_, time_ns, abci.parent_round, _lower(abci.proposer),
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
