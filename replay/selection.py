"""Which archived commands a replay emits: a seq range, a time range, or both.

Seqs are inclusive at both ends, like the gaps table; times are half-open on ``ts_ms``
(``start_ms`` <= ts_ms < ``end_ms``), so consecutive windows neither overlap nor miss a command.
The pruning tests take inclusive bounds of what a file or row group holds, as Parquet
statistics and segment names give them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import SupportsIndex

import pyarrow as pa
import pyarrow.compute as pc
from replica.schemas.errors import UsageError
from replica.schemas.frames import INT64_MAX

SEQ_MAX = INT64_MAX  # seqs are int64 in the archive, as on the feed


def utc_ms(name: str, moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime; a naive one is ambiguous."""
    if not isinstance(moment, datetime):
        raise UsageError(f"{name} must be a datetime, was {moment!r}")
    if moment.tzinfo is None:
        raise UsageError(f"{name} {moment.isoformat()} has no time zone; give a UTC time")
    return round(moment.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _seq(name: str, value: object) -> int | None:
    if value is None:
        return None
    seq = operator.index(value) if isinstance(value, SupportsIndex) else -1
    if seq > SEQ_MAX:  # its digits are not echoed: there can be more than int() will print
        raise UsageError(f"{name} is above {SEQ_MAX}, the largest seq there can be")
    if seq < 0 or isinstance(value, bool):
        raise UsageError(f"{name} must be a seq (an integer from 0 to {SEQ_MAX}), was {value!r}")
    return seq


@dataclass(frozen=True, kw_only=True)
class Selection:
    from_seq: int | None = None
    to_seq: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_seq", _seq("from_seq", self.from_seq))
        object.__setattr__(self, "to_seq", _seq("to_seq", self.to_seq))
        if self.from_seq is not None and self.to_seq is not None and self.from_seq > self.to_seq:
            raise UsageError(f"from_seq {self.from_seq} is above to_seq {self.to_seq}")
        if self.start_ms is not None and self.end_ms is not None and self.start_ms >= self.end_ms:
            raise UsageError(f"start {_iso(self.start_ms)} is not before end {_iso(self.end_ms)}")

    @property
    def by_time(self) -> bool:
        return self.start_ms is not None or self.end_ms is not None

    def holds_seqs(self, first: int, last: int) -> bool:
        """Whether seqs first..last can hold a selected command."""
        return (self.from_seq is None or last >= self.from_seq) and (
            self.to_seq is None or first <= self.to_seq
        )

    def holds_times(self, low_ms: int, high_ms: int) -> bool:
        """Whether ts_ms values within low..high can hold a selected command."""
        return (self.start_ms is None or high_ms >= self.start_ms) and (
            self.end_ms is None or low_ms < self.end_ms
        )

    def beyond(self, seq: pa.Int64Scalar) -> bool:
        """Whether ``seq`` is past the seq range (so is everything after it)."""
        return self.to_seq is not None and seq.as_py() > self.to_seq

    def clip(self, first: int, last: int) -> tuple[int, int]:
        """Seqs first..last narrowed to the seq range."""
        low = first if self.from_seq is None else max(first, self.from_seq)
        high = last if self.to_seq is None else min(last, self.to_seq)
        return low, high

    def seq_slice(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows of a seq-sorted batch that fall in the seq range."""
        seqs = batch.column(0)
        low, high = 0, len(seqs)
        if self.from_seq is not None and seqs[0].as_py() < self.from_seq:
            low = pc.sum(pc.less(seqs, _int64(self.from_seq))).as_py()
        if self.to_seq is not None and seqs[-1].as_py() > self.to_seq:
            high = pc.sum(pc.less_equal(seqs, _int64(self.to_seq))).as_py()
        return batch if (low, high) == (0, len(seqs)) else batch.slice(low, max(high - low, 0))

    def time_mask(self, ts_ms: pa.Array) -> pa.BooleanArray | None:
        """Which rows fall in the time range; None when every row does (no time range)."""
        masks = []
        if self.start_ms is not None:
            masks.append(pc.greater_equal(ts_ms, _int64(self.start_ms)))
        if self.end_ms is not None:
            masks.append(pc.less(ts_ms, _int64(self.end_ms)))
        if not masks:
            return None
        return masks[0] if len(masks) == 1 else pc.and_(masks[0], masks[1])


def _int64(value: int) -> pa.Int64Scalar:
    """A typed scalar for compute functions: given a Python int, pyarrow infers its type, which
    costs tens of microseconds a call (it tries importing optional modules every time)."""
    return pa.scalar(value, pa.int64())
