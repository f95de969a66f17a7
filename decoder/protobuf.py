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

From these rules the plan generates Python source, compiled once: one loop that parses each
payload, branches on its kind and appends each field to its column, as one would write by hand
for one schema. Reading fields through generic per-field machinery (``getattr``, ``attrgetter``
over batches) costs twice as much, and the decoder is meant to stay within reach of the
hand-written loop (see ``benchmarks/decode.py``). ``CommandPlan(...).source`` shows the code.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
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

_F = FieldDescriptor
_ARROW_TYPES = {
    _F.TYPE_DOUBLE: pa.float64(),
    _F.TYPE_FLOAT: pa.float32(),
    _F.TYPE_INT64: pa.int64(),
    _F.TYPE_SINT64: pa.int64(),
    _F.TYPE_SFIXED64: pa.int64(),
    _F.TYPE_UINT64: pa.uint64(),
    _F.TYPE_FIXED64: pa.uint64(),
    _F.TYPE_INT32: pa.int32(),
    _F.TYPE_SINT32: pa.int32(),
    _F.TYPE_SFIXED32: pa.int32(),
    _F.TYPE_UINT32: pa.uint32(),
    _F.TYPE_FIXED32: pa.uint32(),
    _F.TYPE_BOOL: pa.bool_(),
    _F.TYPE_STRING: pa.string(),
    _F.TYPE_BYTES: pa.string(),
    _F.TYPE_ENUM: pa.string(),
}


def _enum_names(field: FieldDescriptor) -> dict[Any, str | None]:
    names: dict[Any, str | None] = {v.number: v.name for v in field.enum_type.values}
    if names.get(0, "").endswith("UNSPECIFIED"):
        names[0] = None
    names[None] = None  # an unset sub-message's enum
    return names


def _jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return MessageToDict(value, preserving_proto_field_name=True)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def json_list(items: Any) -> str:
    return json.dumps([_jsonable(item) for item in items])


def _column_name(prefix: str, name: str) -> str:
    if not prefix or name.startswith(prefix + "_"):
        return name
    return f"{prefix}_{name}"


def _singular(name: str) -> str:
    return name[:-1] if len(name) > 1 and name.endswith("s") else f"{name}_item"


def _get(var: str, name: str) -> str:
    return f"getattr({var}, {name!r})" if keyword.iskeyword(name) else f"{var}.{name}"


class _Source:
    """Generated source being written: statements that read each column's value into a local,
    converted (bytes to hex text, enums to names), and the Arrow fields of those columns."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.fields: list[pa.Field] = []
        self.values: list[str] = []  # the local holding each field's value
        self.namespace: dict[str, Any] = {"json_list": json_list}
        self._names = 0

    def name(self, stem: str) -> str:
        self._names += 1
        return f"{stem}{self._names}"

    def line(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def scalar(self, indent: int, name: str, field: FieldDescriptor, expr: str) -> None:
        local = self.name("v")
        self.fields.append(pa.field(name, _ARROW_TYPES[field.type]))
        self.values.append(local)
        self.line(indent, f"{local} = {expr}")
        if field.type == _F.TYPE_BYTES:
            self.line(indent, f"{local} = '0x' + {local}.hex() if {local} else None")
        elif field.type == _F.TYPE_ENUM:
            names = self.name("ENUM")
            self.namespace[names] = _enum_names(field)
            self.line(indent, f"{local} = {names}[{local}] if {local} in {names} else str({local})")

    def message(
        self, indent: int, var: str, descriptor: Descriptor, prefix: str, skip: tuple[str, ...]
    ) -> None:
        """Read every field of ``var`` into locals, flattening sub-messages."""
        for field in descriptor.fields:
            if field.name in skip:
                continue
            name, get = _column_name(prefix, field.name), _get(var, field.name)
            if field.is_repeated:
                local = self.name("v")
                self.fields.append(pa.field(name, pa.string()))
                self.values.append(local)
                self.line(indent, f"{local} = json_list({get})")
            elif field.message_type is not None:
                sub = self.name("m")
                first = len(self.values)
                self.line(indent, f"if {var}.HasField({field.name!r}):")
                self.line(indent + 1, f"{sub} = {get}")
                self.message(indent + 1, sub, field.message_type, name, ())
                self.line(indent, "else:")
                for local in self.values[first:] or ["_"]:
                    self.line(indent + 1, f"{local} = None")
            else:
                if field.has_presence:
                    get = f"({get} if {var}.HasField({field.name!r}) else None)"
                self.scalar(indent, name, field, get)

    def add(self, indent: int, buffer: str, first: int, values: Sequence[str]) -> None:
        """Append ``values`` to ``buffer``'s columns from number ``first`` on."""
        for i, local in enumerate(values, start=first):
            self.line(indent, f"{buffer}_{i}({local})")


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
        self._types: list[pa.DataType] = []
        self._parents = 0
        self._expanded = False

    def emit(
        self, source: _Source, indent: int, buffer: str, command: Descriptor, envelope: int
    ) -> None:
        """Source that adds a command's rows to ``buffer``; the command is in ``command``, its
        envelope already read into the first ``envelope`` of ``source.values``."""
        keys_and_envelope = ["seq", "time_ms", *source.values[:envelope]]
        envelope_fields = source.fields[:envelope]
        first_field = len(source.fields)
        first_value = len(source.values)
        member, expanded = self._member, None
        if member is not None and member.message_type is None:  # a scalar member: one column
            source.scalar(indent, member.name, member, _get("command", member.name))
        else:
            if member is None:
                fact, var, skip = command, "command", (TIME_FIELD,)
            else:
                fact, var, skip = member.message_type, "fact", ()
                source.line(indent, f"fact = {_get('command', member.name)}")
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
        self._types = [pa.int64(), pa.int64(), *(f.type for f in self.fields)]
        self._expanded = expanded is not None
        del source.fields[first_field:]
        del source.values[first_value:]

    def _emit_elements(
        self, source: _Source, indent: int, buffer: str, var: str, field: FieldDescriptor
    ) -> None:
        """One row per element of ``field``, and one with null element columns when it is empty:
        a fact is never dropped for having no elements."""
        first = len(source.values)
        source.line(indent, f"elements = {_get(var, field.name)}")
        source.line(indent, "if elements:")
        source.line(indent + 1, f"{buffer}.owners.extend([row] * len(elements))")
        source.line(indent + 1, f"{buffer}.idx.extend(range(len(elements)))")
        source.line(indent + 1, "for element in elements:")
        if field.message_type is not None:
            source.message(indent + 2, "element", field.message_type, "", ())
        else:
            source.scalar(indent + 2, _singular(field.name), field, "element")
        source.add(indent + 2, buffer, self._parents, source.values[first:])
        source.line(indent, "else:")
        source.line(indent + 1, f"{buffer}.owners.append(row)")
        source.line(indent + 1, f"{buffer}.idx.append(0)")
        source.add(indent + 1, buffer, self._parents, ["None"] * (len(source.values) - first))

    def buffer(self) -> FactBuffer:
        return FactBuffer([[] for _ in self._types], [], [])

    def rows(self, buffer: FactBuffer) -> FactRows:
        """The buffered rows as Arrow arrays, converted once: each ``pa.array`` call costs
        some microseconds on top of its values."""
        arrays = [pa.array(c, t) for c, t in zip(buffer.columns, self._types, strict=True)]
        if self._expanded:
            take = pa.array(buffer.owners, pa.int32())
            arrays[: self._parents] = [a.take(take) for a in arrays[: self._parents]]
            idx = buffer.idx
        else:
            idx = [0] * len(buffer.columns[0])
        rows = len(idx)
        names = ["seq", "time_ms", *(f.name for f in self.fields)]
        values = dict(zip(names, arrays, strict=True))
        values["idx"] = pa.array(idx, pa.int32())
        values["kind"] = pa.array([self.kind] * rows, pa.string())
        return FactRows(values, rows)

    def dicts(self, buffer: FactBuffer) -> list[dict[str, Any]]:
        """The buffered rows as Python dicts, for a few commands at a time, when building
        Arrow arrays would cost more than the rows are worth."""
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


class CommandPlan:
    """The plan for a whole command message: a FactPlan per kind of fact, and one generated
    function that parses payloads and adds each command's rows to its kind's buffer.

    The kinds are the members of the message's first oneof; its other fields are an envelope
    carried by every row. A message without a oneof is one kind of fact, in a table named
    after the message. The function takes the payloads that are not JSON; it returns nothing
    and reports each payload it cannot decode in ``undecoded`` as (position, reason)."""

    def __init__(self, message: type[Message]) -> None:
        descriptor = message.DESCRIPTOR
        self.descriptor = descriptor
        oneof = descriptor.oneofs[0] if descriptor.oneofs else None
        if oneof is None:
            name = _snake_case(descriptor.name)
            self.kinds = {name: FactPlan(name, name, None)}
            envelope_skip = tuple(descriptor.fields_by_name)
        else:
            self.kinds = {
                f.name: FactPlan(f.name, TABLE_OF_KIND.get(f.name, f.name), f) for f in oneof.fields
            }
            envelope_skip = (*(f.name for f in oneof.fields), TIME_FIELD)
        source = _Source()
        source.namespace |= {"parse": message.FromString, "DecodeError": DecodeError}
        source.namespace |= {"MAX_TS_MS": MAX_TS_MS}
        source.line(0, "def read(payloads, seqs, ts_ms, buffers, undecoded, blocks):")
        for i in range(len(self.kinds)):
            source.line(1, f"b{i} = buffers[{i}]")
            source.line(1, "")  # binds b{i}'s adders, once their number is known
        source.line(1, "for position, payload in enumerate(payloads):")
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
            source.line(2, f"time_ms = {_get('command', TIME_FIELD)}")
            source.line(2, "if time_ms > MAX_TS_MS:")
            message = "protobuf: time_ms {time_ms} is beyond the year 9999"
            source.line(3, f"undecoded.append((position, f{message!r}))")
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
