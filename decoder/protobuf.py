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

Columns are read a whole batch at a time (``map`` over messages), which keeps the generic
mapping as fast as a loop written for one schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter, methodcaller
from typing import Any

import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

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

Columns = list[list[Any]]


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def hex_text(values: Sequence[bytes]) -> list[str | None]:
    return ["0x" + value.hex() if value else None for value in values]


def _enum_names(field: FieldDescriptor) -> Callable[[Sequence[int]], list[str | None]]:
    names: dict[int, str | None] = {v.number: v.name for v in field.enum_type.values}
    if names.get(0, "").endswith("UNSPECIFIED"):
        names[0] = None
    return lambda values: [names[v] if v in names else str(v) for v in values]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return MessageToDict(value, preserving_proto_field_name=True)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _json_list(values: Sequence[Any]) -> list[str]:
    return [json.dumps([_jsonable(item) for item in items]) for items in values]


class _Leaf:
    """One column read straight off one field."""

    def __init__(self, field: FieldDescriptor, name: str) -> None:
        self.fields = [
            pa.field(name, pa.string() if _is_repeated(field) else _ARROW_TYPES[field.type])
        ]
        self._get = attrgetter(field.name)
        # Proto3 scalars without presence read as their default when unset; with presence
        # (``optional``) an unset one is null rather than 0.
        self._has = (
            methodcaller("HasField", field.name)
            if field.has_presence and not _is_repeated(field)
            else None
        )
        if _is_repeated(field):
            self._convert: Callable[[Sequence[Any]], list[Any]] | None = _json_list
        elif field.type == _F.TYPE_BYTES:
            self._convert = hex_text
        elif field.type == _F.TYPE_ENUM:
            self._convert = _enum_names(field)
        else:
            self._convert = None

    def read(self, messages: Sequence[Message]) -> Columns:
        values = list(map(self._get, messages))
        if self._convert is not None:
            values = self._convert(values)
        if self._has is not None:
            values = [
                v if has else None for v, has in zip(values, map(self._has, messages), strict=True)
            ]
        return [values]


class _Flattened:
    """The columns of a singular sub-message, null on rows where it is not set."""

    def __init__(self, field: FieldDescriptor, prefix: str) -> None:
        self._inner = MessageColumns(field.message_type, prefix)
        self.fields = self._inner.fields
        self._get = attrgetter(field.name)
        self._has = methodcaller("HasField", field.name)

    def read(self, messages: Sequence[Message]) -> Columns:
        columns = self._inner.read(list(map(self._get, messages)))
        present = list(map(self._has, messages))
        if all(present):
            return columns
        return [
            [v if has else None for v, has in zip(col, present, strict=True)] for col in columns
        ]


def _column_name(prefix: str, name: str) -> str:
    if not prefix or name.startswith(prefix + "_"):
        return name
    return f"{prefix}_{name}"


class MessageColumns:
    """The columns of every non-repeated-element field of a message, in field order."""

    def __init__(
        self, descriptor: Descriptor, prefix: str = "", skip: tuple[str, ...] = ()
    ) -> None:
        self._parts: list[_Leaf | _Flattened] = []
        for field in descriptor.fields:
            if field.name in skip:
                continue
            name = _column_name(prefix, field.name)
            if field.message_type is not None and not _is_repeated(field):
                self._parts.append(_Flattened(field, name))
            else:
                self._parts.append(_Leaf(field, name))
        self.fields = [f for part in self._parts for f in part.fields]

    def read(self, messages: Sequence[Message]) -> Columns:
        return [col for part in self._parts for col in part.read(messages)]


def _singular(name: str) -> str:
    return name[:-1] if len(name) > 1 and name.endswith("s") else f"{name}_item"


class _Elements:
    """The repeated field a fact message is expanded by: one row per element."""

    def __init__(self, field: FieldDescriptor) -> None:
        self._get = attrgetter(field.name)
        self._message_type = field.message_type
        if field.message_type is not None:
            self._columns: MessageColumns | None = MessageColumns(field.message_type)
            self.fields = self._columns.fields
        else:
            self._columns = None
            self.fields = [pa.field(_singular(field.name), _ARROW_TYPES[field.type])]
        self._convert = (
            hex_text
            if field.type == _F.TYPE_BYTES
            else _enum_names(field)
            if field.type == _F.TYPE_ENUM
            else None
        )

    def expand(self, messages: Sequence[Message]) -> tuple[list[int], list[int], Columns]:
        """Rows for ``messages``: which message each row came from, its idx, and the element
        columns. A message with no elements still yields one row, with null element columns:
        a fact is never dropped for being empty."""
        owners: list[int] = []
        idx: list[int] = []
        elements: list[Any] = []
        empty: list[int] = []
        for i, items in enumerate(map(self._get, messages)):
            n = len(items)
            if n == 0:
                empty.append(len(owners))
                owners.append(i)
                idx.append(0)
                elements.append(None)
            else:
                owners.extend([i] * n)
                idx.extend(range(n))
                elements.extend(items)
        if self._columns is not None:
            if empty:
                filler = GetMessageClass(self._message_type)()
                for row in empty:
                    elements[row] = filler
            columns = self._columns.read(elements)
        else:
            if empty and self._convert is not None:
                for row in empty:
                    elements[row] = 0 if self._convert is not hex_text else b""
            columns = [self._convert(elements) if self._convert else elements]
        for row in empty:
            for col in columns:
                col[row] = None
        return owners, idx, columns


@dataclass
class FactRows:
    """The rows one kind of fact produced from a batch of commands."""

    owners: list[int]  # for each row, the index of its command in the batch
    idx: list[int]
    columns: Columns  # aligned with the plan's ``fields``


class FactPlan:
    """How one kind of fact (a oneof member, or a command without a oneof) becomes rows."""

    def __init__(
        self,
        kind: str,
        table: str,
        field: FieldDescriptor | None,
        fact: Descriptor,
        skip: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.table = table
        self._get = attrgetter(field.name) if field is not None else None
        if field is not None and field.message_type is None:  # a scalar member: one column
            self._columns: MessageColumns | _Leaf = _Leaf(field, field.name)
            self._get = None
            self._elements = None
        else:
            repeated = [f for f in fact.fields if _is_repeated(f)]
            self._elements = _Elements(repeated[0]) if len(repeated) == 1 else None
            if self._elements is not None:
                skip = (*skip, repeated[0].name)
            self._columns = MessageColumns(fact, skip=skip)
        self.fields = self._columns.fields + (self._elements.fields if self._elements else [])

    def rows(self, commands: Sequence[Message]) -> FactRows:
        facts = commands if self._get is None else list(map(self._get, commands))
        if self._elements is None:
            n = len(facts)
            return FactRows(list(range(n)), [0] * n, self._columns.read(facts))
        owners, idx, element_columns = self._elements.expand(facts)
        if len(owners) != len(facts):
            facts = [facts[i] for i in owners]
        return FactRows(owners, idx, self._columns.read(facts) + element_columns)


def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class CommandPlan:
    """The plan for a whole command message: its envelope and a FactPlan per kind.

    The kinds are the members of the message's first oneof. A message without a oneof is one
    kind of fact, in a table named after the message."""

    def __init__(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor
        self.oneof = descriptor.oneofs[0].name if descriptor.oneofs else None
        self.time_of = attrgetter(TIME_FIELD) if TIME_FIELD in descriptor.fields_by_name else None
        if self.oneof is None:
            name = _snake_case(descriptor.name)
            self.kinds = {name: FactPlan(name, name, None, descriptor, skip=(TIME_FIELD,))}
            skip: tuple[str, ...] = tuple(descriptor.fields_by_name)
        else:
            members = descriptor.oneofs[0].fields
            self.kinds = {
                f.name: FactPlan(f.name, TABLE_OF_KIND.get(f.name, f.name), f, f.message_type)
                for f in members
            }
            skip = (*(f.name for f in members), TIME_FIELD)
        self.envelope = MessageColumns(descriptor, skip=skip)
