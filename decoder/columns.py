"""Rows into Arrow columns, the one place where a decoded value meets its column's type.

A payload can carry any value: an integer of 400 digits, a negative number where the column is
unsigned, bytes that are not UTF-8 where the column is text. Whatever reaches a column passes
through ``arrays``, so no such value can escape as an exception that stops ``replica decode``:
it is reported as a ``Misfits`` naming each row that holds one, and the caller sets those rows
aside as ``undecoded`` rows and converts the rest.

The fast path is one ``pa.array`` call per column, as before; values are looked at one by one
only when a column failed to convert, so a batch without a misfit costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa

# What pa.array raises for a value its type cannot hold: OverflowError for an integer beyond
# the C type, ArrowInvalid (a ValueError) for one beyond int64 or bytes that are not UTF-8,
# ArrowTypeError (a TypeError) for a value of another kind.
CONVERSION_ERRORS = (ArithmeticError, ValueError, TypeError, pa.ArrowException)

_SHOWN_CHARS = 40


class Misfits(Exception):
    """Rows holding a value their column cannot hold: row index -> why, and row index -> the
    index of (the first) column whose value it is."""

    def __init__(self, rows: dict[int, str], columns: dict[int, int] | None = None) -> None:
        super().__init__(f"{len(rows)} rows hold values their columns cannot hold")
        self.rows = rows
        self.columns = columns or {}


def shown(value: Any) -> str:
    """A value as an error message may show it: short, and safe for any size (``repr`` of an
    integer over 4300 digits raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"{'a negative' if value < 0 else 'an'} integer of {value.bit_length()} bits"
    if isinstance(value, str | bytes) and len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS]!r}... ({len(value):,} long)"
    return repr(value)


def misfit(value: Any, field: pa.Field) -> str | None:
    """Why ``value`` cannot be a value of ``field``'s column, or None if it can."""
    try:
        pa.array([value], field.type)
    except CONVERSION_ERRORS:
        return f"{field.name}: {shown(value)} does not fit {field.type}"
    return None


def arrays(columns: Sequence[Sequence[Any]], fields: Sequence[pa.Field]) -> list[pa.Array]:
    """One array per column of ``fields``' type; raises ``Misfits`` if any value does not fit.

    ``columns`` may be longer than ``fields``: the columns beyond are not converted."""
    converted: list[pa.Array] = []
    failed: list[int] = []
    error: Exception | None = None
    for i, field in enumerate(fields):
        try:
            converted.append(pa.array(columns[i], field.type))
        except CONVERSION_ERRORS as exc:
            failed.append(i)
            error = error or exc
    if error is None:
        return converted
    rows: dict[int, str] = {}
    where: dict[int, int] = {}
    for i in failed:
        for row, value in enumerate(columns[i]):
            if row not in rows:
                reason = misfit(value, fields[i])
                if reason is not None:
                    rows[row] = reason
                    where[row] = i
    if not rows:  # the column failed as a whole, not for any one value: not ours to explain
        raise error
    raise Misfits(rows, where)


def row_arrays(rows: Sequence[tuple[Any, ...]], fields: Sequence[pa.Field]) -> list[pa.Array]:
    """``arrays`` of the columns of ``rows`` (tuples of one length, which may be longer than
    ``fields``; the values beyond are integers): one C pass that converts the rows as a struct
    array when every value fits, the rows transposed and converted column by column (which
    names the misfits) when one does not."""
    extra = [pa.field(f"_{i}", pa.int64()) for i in range(len(fields), len(rows[0]))]
    try:
        converted: list[pa.Array] = pa.array(rows, pa.struct([*fields, *extra])).flatten()
        return converted[: len(fields)]
    except CONVERSION_ERRORS:
        return arrays(list(zip(*rows, strict=True)), fields)


def _sure(type_: pa.DataType) -> Callable[[Any], bool]:
    """A test that says True only for values Arrow surely takes into a column of ``type_``
    (None, and values of the column's own Python type and range); False means "ask Arrow"."""
    if pa.types.is_integer(type_):
        bits = type_.bit_width
        low, high = (
            (-(1 << bits - 1), (1 << bits - 1) - 1)
            if pa.types.is_signed_integer(type_)
            else (0, (1 << bits) - 1)
        )
        return lambda v: v is None or (type(v) is int and low <= v <= high)
    if pa.types.is_floating(type_):
        return lambda v: v is None or type(v) is float
    if pa.types.is_boolean(type_):
        return lambda v: v is None or type(v) is bool
    if pa.types.is_string(type_):
        return lambda v: v is None or (type(v) is str and v.isascii())
    return lambda v: False


class SurelyFit:
    """Whether every value of some columns surely fits, without building arrays: for one
    payload's rows, which ``arrays`` would take longer to convert than they took to decode.
    False says nothing about the values: ``arrays`` decides."""

    def __init__(self, fields: Sequence[pa.Field]) -> None:
        self._tests = [_sure(field.type) for field in fields]

    def __call__(self, columns: Iterable[Sequence[Any]]) -> bool:
        """Columns beyond the fields are not looked at."""
        tests = zip(self._tests, columns, strict=False)
        return all(all(map(test, column)) for test, column in tests)
