"""What a unit keeps of the frames it quarantines, and how much memory that holds.

A unit holds its quarantine rows until it is sealed, so a feed of bad frames would otherwise
grow memory without bound (15,000 frames of 64 KiB held a gigabyte). Two limits keep it small:
a frame's text is capped at ``FRAME_TEXT_CAP``, and once ``FULL_COPIES`` identical frames are
stored in full in a unit, further copies keep only their size, reason and hash. What a unit's
rows hold is counted in ``held_bytes``; the recorder's session seals a unit that reaches
``MAX_UNIT_QUARANTINE_BYTES``. Every bad frame still gets its row and is counted.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_FRAME_BYTES = 64 * 2**20  # the connection refuses a frame above this without reading it
FRAME_TEXT_CAP = 65_536
FULL_COPIES = 16
MAX_UNIT_QUARANTINE_BYTES = 16 * 2**20
_ROW_OVERHEAD = 200  # a row's Python objects besides its two strings, roughly


def conflict_reason(seq: int, archived: bytes, raw: bytes) -> str:
    return (
        f"seq {seq} repeated with a different payload: archived {len(archived)} bytes sha256 "
        f"{hashlib.sha256(archived).hexdigest()[:16]}, this frame {len(raw)} bytes sha256 "
        f"{hashlib.sha256(raw).hexdigest()[:16]}"
    )


@dataclass(frozen=True)
class QuarantineRow:
    recv_ts_us: int
    kind: str
    reason: str
    seq: int | None
    frame: str
    frame_bytes: int


class TooBig(NamedTuple):
    """A frame over ``MAX_FRAME_BYTES``, which the connection closed on without reading it:
    its size, or when it came compressed only that it inflates to more than ``size``."""

    size: int
    exact: bool

    @property
    def reason(self) -> str:
        what = (
            f"frame of {self.size} bytes is over"
            if self.exact
            else "compressed frame inflates to more than"
        )
        return (
            f"{what} the {MAX_FRAME_BYTES} byte limit; its content was not read and the "
            "connection was closed (1009)"
        )


@dataclass
class UnitQuarantine:
    rows: list[QuarantineRow] = field(default_factory=list)
    held_bytes: int = 0
    _copies: dict[bytes, int] = field(default_factory=dict)

    def add(
        self, recv_us: int, kind: str, reason: str, seq: int | None, frame: str | bytes
    ) -> None:
        data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
        digest = hashlib.sha256(data).digest()
        copies = self._copies.get(digest, 0)
        self._copies[digest] = copies + 1
        if copies >= FULL_COPIES:
            text = ""
            reason = (
                f"{reason} (frame not stored: identical to one stored in full earlier in this "
                f"unit, sha256 {digest.hex()[:16]})"
            )
        elif isinstance(frame, str):
            text = frame[:FRAME_TEXT_CAP]
        else:
            text = "0x" + frame[: (FRAME_TEXT_CAP - 2) // 2].hex()
        self._append(QuarantineRow(recv_us, kind, reason, seq, text, len(data)))

    def add_unread(self, recv_us: int, too_big: TooBig) -> None:
        """A frame the connection refused unread: its size and why, no content."""
        self._append(QuarantineRow(recv_us, "too_big", too_big.reason, None, "", too_big.size))

    def _append(self, row: QuarantineRow) -> None:
        self.rows.append(row)
        self.held_bytes += _ROW_OVERHEAD + sys.getsizeof(row.frame) + sys.getsizeof(row.reason)
