"""Protobuf messages into Arrow columns, planned from their descriptors.

Nothing here names a field of the v1 contract: a field added to the .proto becomes a column, and
a message added to the command's ``oneof`` becomes rows of a table, with no decoder change. The
rules a plan follows, for a command message such as ``ReplicaCommand``:

- Each member of a ``oneof`` is a kind of fact, and its message's rows go to one table (see
  ``TABLE_OF_KIND``; a member not listed there gets a table named after it). The command's other
  fields form an envelope repeated on every row.
- A scalar becomes a column of its Arrow type. Bytes become ``0x``-prefixed lowercase hex text,
  so SQL can filter addresses; an enum becomes its value's name. Absent values are null: empty
  bytes, an enum's ``*_UNSPECIFIED`` zero, a field with presence that is not set.
- A singular message field is flattened into ``<field>_<subfield>`` columns (without repeating a
  prefix the subfield already has: ``trigger.trigger_px`` is ``trigger_px``), null when unset.
- A fact message with exactly one repeated field yields one row per element, numbered by
  ``idx``; its other fields repeat on each row. Other repeated fields are JSON text columns.

From these rules the plan generates Python source (written by ``reader_source.Source``),
compiled once: one loop that parses each payload, branches on its kind and appends each field
to its column, as one would write by hand for one schema. Reading fields through generic
per-field machinery (``getattr``, ``attrgetter`` over batches) costs twice as much, and the
decoder is meant to stay within reach of the hand-written loop (see ``benchmarks/decode.py``).
``CommandPlan(...).source`` shows the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from replica.decoder.columns import Misfits, SurelyFit, arrays
from replica.decoder.messages import message_descriptor
from replica.decoder.reader_source import Source, attribute, singular
from replica.schemas.frames import MAX_TS_MS

# The v1 oneof members whose table is not simply named after them.
TABLE_OF_KIND = {
    "order": "orders",
    "cancel": "cancels",
    "cancel_all": "cancels",
    "fill": "fills",
    "liquidation": "liquidations",
    "withdrawal": "withdrawals",
    "deposit": "deposits",
}

KEY_FIELDS = (
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("idx", pa.int32(), nullable=False),
    pa.field("time_ms", pa.int64(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
)
# An envelope field of this name is the command's own time and fills the key column; a command
# without one (or with 0) takes the archive's ts_ms.
TIME_FIELD = "time_ms"

# A payload over this size is an undecoded row ("too_large: ...") and is not parsed: decoding
# takes tens of times a payload's size in memory (a 52 MB node block took 3 GB). Mainnet node
# blocks are 0.5 MB to a few MB, protobuf commands a few hundred bytes.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class FactBuffer:
    """A kind's rows so far: its columns as lists; for an expanded fact, each element row's
    owner (the index of its fact's row in ``columns``) and idx."""

    columns: list[list[Any]]
    owners: list[int]
    idx: list[int]


@dataclass(frozen=True)
class FactRows:
    columns: dict[str, pa.Array]  # the key columns, then the plan's fields
    rows: int


class FactPlan:
    """How one kind of fact (a oneof member, or a command without a oneof) becomes rows.

    ``fields`` are its columns after the key columns: the command's envelope, the fact's own
    fields, then those of the repeated field it is expanded by, if any. A fact expanded by a
    repeated field reads its own fields once, and Arrow repeats them for each element."""

    def __init__(self, kind: str, table: str, member: FieldDescriptor | None) -> None:
        self.kind = kind
        self.table = table
        self._member = member
        self.fields: list[pa.Field] = []
        self._columns: list[pa.Field] = []  # the buffer's: seq, time_ms, then ``fields``
        self._parents = 0
        self._expanded = False

    def emit(
        self, source: Source, indent: int, buffer: str, command: Descriptor, envelope: int
    ) -> None:
        """Source that adds a command's rows to ``buffer``; the command is in ``command``, its
        envelope already read into the first ``envelope`` of ``source.values``."""
        keys_and_envelope = ["seq", "time_ms", *source.values[:envelope]]
        envelope_fields = source.fields[:envelope]
        first_field = len(source.fields)
        first_value = len(source.values)
        member, expanded = self._member, None
        if member is not None and member.message_type is None:  # a scalar member: one column
            source.scalar(indent, member.name, member, attribute("command", member.name))
        else:
            fact, var = command, "command"
            skip: tuple[str, ...] = (TIME_FIELD,)
            if member is not None and member.message_type is not None:
                fact, var, skip = member.message_type, "fact", ()
                source.line(indent, f"fact = {attribute('command', member.name)}")
            repeated = [f for f in fact.fields if f.is_repeated]
            if len(repeated) == 1:
                expanded = repeated[0]
                skip = (*skip, expanded.name)
            source.message(indent, var, fact, "", skip)
        parents = keys_and_envelope + source.values[first_value:]
        self._parents = len(parents)
        if expanded is not None:
            source.line(indent, f"row = len({buffer}.columns[0])")
        source.add(indent, buffer, 0, parents)
        if expanded is not None:
            self._emit_elements(source, indent, buffer, var, expanded)
        self.fields = envelope_fields + source.fields[first_field:]
        self._columns = [KEY_FIELDS[0], KEY_FIELDS[2], *self.fields]
        self.surely_fit = SurelyFit(self._columns)
        self._expanded = expanded is not None
        del source.fields[first_field:]
        del source.values[first_value:]

    def _emit_elements(
        self, source: Source, indent: int, buffer: str, var: str, field: FieldDescriptor
    ) -> None:
        """One row per element of ``field``, and one with null element columns when it is empty:
        a fact is never dropped for having no elements."""
        first = len(source.values)
        source.line(indent, f"elements = {attribute(var, field.name)}")
        source.line(indent, "if elements:")
        source.line(indent + 1, f"{buffer}.owners.extend([row] * len(elements))")
        source.line(indent + 1, f"{buffer}.idx.extend(range(len(elements)))")
        source.line(indent + 1, "for element in elements:")
        if field.message_type is not None:
            source.message(indent + 2, "element", field.message_type, "", ())
        else:
            source.scalar(indent + 2, singular(field.name), field, "element")
        source.add(indent + 2, buffer, self._parents, source.values[first:])
        source.line(indent, "else:")
        source.line(indent + 1, f"{buffer}.owners.append(row)")
        source.line(indent + 1, f"{buffer}.idx.append(0)")
        source.add(indent + 1, buffer, self._parents, ["None"] * (len(source.values) - first))

    def buffer(self) -> FactBuffer:
        return FactBuffer([[] for _ in self._columns], [], [])

    def rows(self, buffer: FactBuffer) -> FactRows:
        """The buffered rows as Arrow arrays, converted once: each ``pa.array`` call costs
        some microseconds on top of its values. Raises ``Misfits`` naming the commands (by
        their row in the buffer's first columns) with a value their column cannot hold."""
        parents = self._parents if self._expanded else len(self._columns)
        columns = buffer.columns
        misfits: dict[int, str] = {}
        converted: list[pa.Array] = []
        try:
            converted += arrays(columns[:parents], self._columns[:parents])
        except Misfits as exc:
            misfits |= exc.rows
        if self._expanded:
            try:
                converted += arrays(columns[parents:], self._columns[parents:])
            except Misfits as exc:
                for element, why in exc.rows.items():
                    misfits.setdefault(buffer.owners[element], why)
        if misfits:
            raise Misfits(misfits)
        if self._expanded:
            take = pa.array(buffer.owners, pa.int32())
            converted[:parents] = [a.take(take) for a in converted[:parents]]
            idx = buffer.idx
        else:
            idx = [0] * len(columns[0])
        rows = len(idx)
        names = [f.name for f in self._columns]
        values = dict(zip(names, converted, strict=True))
        values["idx"] = pa.array(idx, pa.int32())
        values["kind"] = pa.array([self.kind] * rows, pa.string())
        return FactRows(values, rows)

    def without(self, buffer: FactBuffer, commands: set[int]) -> FactBuffer:
        """``buffer`` without the rows of the ``commands`` (their rows in the first columns)."""
        parents = self._parents if self._expanded else len(self._columns)
        keep = [row for row in range(len(buffer.columns[0])) if row not in commands]
        columns = [[column[row] for row in keep] for column in buffer.columns[:parents]]
        if not self._expanded:
            return FactBuffer(columns, [], [])
        renumbered = {old: new for new, old in enumerate(keep)}
        elements = [i for i, owner in enumerate(buffer.owners) if owner not in commands]
        columns += [[column[i] for i in elements] for column in buffer.columns[parents:]]
        owners = [renumbered[buffer.owners[i]] for i in elements]
        return FactBuffer(columns, owners, [buffer.idx[i] for i in elements])

    def dicts(self, buffer: FactBuffer) -> list[dict[str, Any]]:
        """The buffered rows as Python dicts, for a few commands at a time, when building an
        Arrow table would cost more than the rows are worth (``rows`` still checks that every
        value fits its column)."""
        names = ["seq", "time_ms", *(f.name for f in self.fields)]
        kind = self.kind
        if not self._expanded:
            return [
                {**dict(zip(names, values, strict=True)), "idx": 0, "kind": kind}
                for values in zip(*buffer.columns, strict=True)
            ]
        parent_names, element_names = names[: self._parents], names[self._parents :]
        parents = [
            dict(zip(parent_names, values, strict=True))
            for values in zip(*buffer.columns[: self._parents], strict=True)
        ]
        return [
            {**parents[owner], **dict(zip(element_names, values, strict=True)), "idx": idx}
            | {"kind": kind}
            for owner, idx, *values in zip(
                buffer.owners, buffer.idx, *buffer.columns[self._parents :], strict=True
            )
        ]


def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _field(field: object) -> FieldDescriptor:
    """A oneof member as the Python descriptor type (see ``messages.message_descriptor``)."""
    if not isinstance(field, FieldDescriptor):
        raise TypeError(f"a oneof member is a {type(field).__name__}")
    return field


class CommandPlan:
    """The plan for a whole command message: a FactPlan per kind of fact, and one generated
    function that parses payloads and adds each command's rows to its kind's buffer.

    The kinds are the members of the message's first oneof; its other fields are an envelope
    carried by every row. A message without a oneof is one kind of fact, in a table named
    after the message. The function takes the payloads that are not JSON; it returns nothing
    and reports each payload it cannot decode in ``undecoded`` as (position, reason)."""

    def __init__(self, message: type[Message]) -> None:
        descriptor = message_descriptor(message)
        self.descriptor = descriptor
        oneof = descriptor.oneofs[0] if descriptor.oneofs else None
        if oneof is None:
            name = _snake_case(descriptor.name)
            self.kinds = {name: FactPlan(name, name, None)}
            envelope_skip = tuple(descriptor.fields_by_name)
        else:
            self.kinds = {
                f.name: FactPlan(f.name, TABLE_OF_KIND.get(f.name, f.name), _field(f))
                for f in oneof.fields
            }
            envelope_skip = (*(f.name for f in oneof.fields), TIME_FIELD)
        source = Source()
        source.namespace |= {"parse": message.FromString, "DecodeError": DecodeError}
        source.namespace |= {"MAX_TS_MS": MAX_TS_MS, "MAX_PAYLOAD_BYTES": MAX_PAYLOAD_BYTES}
        source.line(0, "def read(payloads, seqs, ts_ms, buffers, undecoded, blocks):")
        for i in range(len(self.kinds)):
            source.line(1, f"b{i} = buffers[{i}]")
            source.line(1, "")  # binds b{i}'s adders, once their number is known
        source.line(1, "for position, payload in enumerate(payloads):")
        source.line(2, "if len(payload) > MAX_PAYLOAD_BYTES:")
        too_large = "too_large: {len(payload)} bytes, over the limit of {MAX_PAYLOAD_BYTES}"
        source.line(3, f"undecoded.append((position, f{too_large!r}))")
        source.line(3, "continue")
        source.line(2, "if payload[:1] == b'{':  # a node block: never a protobuf message")
        source.line(3, "blocks.append(position)")
        source.line(3, "continue")
        source.line(2, "try:")
        source.line(3, "command = parse(payload)")
        source.line(2, "except DecodeError as exc:")
        source.line(3, "undecoded.append((position, f'protobuf: {exc}'))")
        source.line(3, "continue")
        source.line(2, "seq = seqs[position]")
        if TIME_FIELD in descriptor.fields_by_name:
            source.line(2, f"time_ms = {attribute('command', TIME_FIELD)}")
            source.line(2, "if time_ms > MAX_TS_MS:")
            beyond = "protobuf: time_ms {time_ms} is beyond the year 9999"
            source.line(3, f"undecoded.append((position, f{beyond!r}))")
            source.line(3, "continue")
            source.line(2, "time_ms = time_ms or ts_ms[position]")
        else:
            source.line(2, "time_ms = ts_ms[position]")
        source.message(2, "command", descriptor, "", envelope_skip)
        envelope = len(source.values)
        if oneof is None:
            next(iter(self.kinds.values())).emit(source, 2, "b0", descriptor, envelope)
        else:
            source.line(2, f"kind = command.WhichOneof({oneof.name!r})")
            for i, (kind, fact) in enumerate(self.kinds.items()):
                source.line(2, f"{'if' if i == 0 else 'elif'} kind == {kind!r}:")
                fact.emit(source, 3, f"b{i}", descriptor, envelope)
            source.line(2, "else:")
            reason = "'empty payload' if not payload else 'protobuf: no command kind set'"
            source.line(3, f"undecoded.append((position, {reason}))")
        for i, fact in enumerate(self.kinds.values()):
            adders = ", ".join(f"b{i}_{n}" for n in range(len(fact.buffer().columns)))
            source.lines[2 + 2 * i] = f"    {adders}, = [c.append for c in b{i}.columns]"
        self.source = "\n".join(source.lines)
        exec(compile(self.source, f"<reader of {descriptor.full_name}>", "exec"), source.namespace)
        self._read = source.namespace["read"]

    def read(
        self, payloads: Sequence[bytes], seqs: Sequence[int], ts_ms: Sequence[int]
    ) -> tuple[list[tuple[FactPlan, FactBuffer]], list[tuple[int, str]], list[int]]:
        """The rows of the protobuf payloads, per kind that has any; the positions of those
        that did not decode, with the reason; and the positions of the JSON payloads, left to
        the node decoder."""
        buffers = [fact.buffer() for fact in self.kinds.values()]
        undecoded: list[tuple[int, str]] = []
        blocks: list[int] = []
        self._read(payloads, seqs, ts_ms, buffers, undecoded, blocks)
        facts = [
            (fact, buffer)
            for fact, buffer in zip(self.kinds.values(), buffers, strict=True)
            if buffer.columns[0]
        ]
        return facts, undecoded, blocks
