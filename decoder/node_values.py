"""Reading the values node actions and responses hold, shared by the fact handlers.

Actions are decoded by msgspec into typed structs in C; ``strict=False`` lets a decimal string
decode as a float (and a numeric string as an int), as the node writes prices and sizes.
Integers are read as any int, their ranges checked where rows become columns
(``columns.arrays``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from replica.decoder.columns import shown

Float = float | None
# A handler's rows: (table, the values of FACT_COLUMNS[table]).
Facts = Iterator[tuple[str, tuple[Any, ...]]]
Handler = Callable[[bytes, str | None, msgspec.Raw], Facts]


def decoder(struct: Any) -> Callable[[bytes], Any]:
    """A JSON decoder of ``struct`` that takes numbers written as text."""
    return msgspec.json.Decoder(struct, strict=False).decode


def json_array(values: list[msgspec.Raw]) -> bytes:
    """Raw JSON values as one JSON array: one decoder call reads them all, in one C pass."""
    return b"[" + b",".join(values) + b"]"


def lower(text: str | None) -> str | None:
    """Addresses, hashes and cloids as lowercase text (the node writes some checksummed)."""
    return text.lower() if text else None


def number(value: Any) -> float | None:
    """A decimal string or number of a response (whose values are not typed) as a float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def uint64(value: Any) -> int | None:
    """An untyped value that is an integer id: an oid the node gave, a part of an ethId."""
    return value if type(value) is int and 0 <= value < 1 << 64 else None


def millionths(value: Any) -> float | None:
    """``usd`` as the node writes it, an integer of millionths of USDC, in dollars; decimal text
    (as the fixture feed writes it) is taken as dollars. Raises ``ValueError`` for an integer
    beyond a double."""
    if type(value) is int:
        try:
            return value / 1e6
        except OverflowError:
            raise ValueError(f"usd: {shown(value)} is beyond a double") from None
    return number(value)
