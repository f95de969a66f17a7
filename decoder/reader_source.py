"""The source of the reader a ``CommandPlan`` generates: locals read from a message's fields,
converted as ``decoder.protobuf`` says (bytes to hex text, enums to names, sub-messages
flattened), and the Arrow fields of the columns they fill."""

from __future__ import annotations

import json
import keyword
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from replica.schemas.errors import UsageError

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
    if field.enum_type is None:
        raise ValueError(f"field {field.name} is not an enum")
    names: dict[Any, str | None] = {v.number: v.name for v in field.enum_type.values}
    if (names.get(0) or "").endswith("UNSPECIFIED"):
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


def singular(name: str) -> str:
    return name[:-1] if len(name) > 1 and name.endswith("s") else f"{name}_item"


def attribute(var: str, name: str) -> str:
    """Source reading attribute ``name`` of the object in ``var``."""
    return f"getattr({var}, {name!r})" if keyword.iskeyword(name) else f"{var}.{name}"


class RecursiveMessage(UsageError):
    """A message that contains itself through singular fields: it has no finite columns."""


class Source:
    """Generated source being written: statements that read each column's value into a local,
    converted (bytes to hex text, enums to names), and the Arrow fields of those columns."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.fields: list[pa.Field] = []
        self.values: list[str] = []  # the local holding each field's value
        self.namespace: dict[str, Any] = {"json_list": json_list}
        self._names = 0
        self._flattening: list[str] = []  # the messages being flattened, outermost first

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
        if descriptor.full_name in self._flattening:
            cycle = " -> ".join([*self._flattening, descriptor.full_name])
            raise RecursiveMessage(
                f"message {descriptor.full_name} contains itself ({cycle}): its sub-messages "
                "cannot all become columns; decode with a message whose singular message fields "
                "do not lead back to it (a repeated field is JSON text and may)"
            )
        self._flattening.append(descriptor.full_name)
        self._message_fields(indent, var, descriptor, prefix, skip)
        self._flattening.pop()

    def _message_fields(
        self, indent: int, var: str, descriptor: Descriptor, prefix: str, skip: tuple[str, ...]
    ) -> None:
        for field in descriptor.fields:
            if field.name in skip:
                continue
            name, get = _column_name(prefix, field.name), attribute(var, field.name)
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
