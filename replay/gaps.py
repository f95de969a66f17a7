"""Finding the seqs missing inside a replay's range, and placing each report in the stream.

Sans-I/O: fed the archive's seqs batch by batch, it says before which emitted command each gap
is reported. The rule: a gap is reported before the first emitted command after it, if a
command was emitted before it; with ``from_seq`` the range starts there, so missing seqs after
it are reported too; with ``to_seq`` the range ends there, so missing seqs up to it are
reported at the end. Missing seqs before the first emitted command of a range without
``from_seq`` (or after the last one without ``to_seq``) are outside the range.

Rows left out by the time range are not missing: seqs are tracked over what the archive holds.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from replica.schemas.errors import ArchiveError

Range = tuple[int, int]  # inclusive
_ONE = pa.scalar(1, pa.int64())  # typed: see replay.selection._int64


class GapTracker:
    def __init__(self, from_seq: int | None, to_seq: int | None) -> None:
        self._to_seq = to_seq
        self._last = None if from_seq is None else from_seq - 1  # the last seq held, or before
        self._open = from_seq is not None  # whether the range has begun
        self._pending: list[Range] = []  # gaps not yet followed by an emitted command

    def held(self, seqs: pa.Array, kept: pa.BooleanArray | None) -> list[tuple[int, list[Range]]]:
        """Take the next sorted seqs the archive holds, of which ``kept`` are emitted (all when
        None). Returns (i, gaps): report ``gaps`` before the i-th emitted command of this batch."""
        found = self._gaps_in(seqs)
        emitted = len(seqs) if kept is None else pc.sum(kept).as_py() or 0
        if not emitted:
            self._pending += [gap for _, gap in found]
            return []
        if kept is not None and found:
            before = pc.cumulative_sum(pc.cast(kept, pa.int64())).to_pylist()
            found = [(before[i - 1] if i else 0, gap) for i, gap in found]
        carried, self._pending = self._pending, []
        placed: list[tuple[int, list[Range]]] = []
        for at, gap in [(0, gap) for gap in carried] + found:
            if at == emitted:
                self._pending.append(gap)  # no emitted command follows in this batch
            elif self._open or at > 0:
                if placed and placed[-1][0] == at:
                    placed[-1][1].append(gap)
                else:
                    placed.append((at, [gap]))
        self._open = True
        return placed

    def skipped(self, first_seq: int, last_seq: int) -> None:
        """Seqs first..last are held, but not read and not emitted; gaps inside are unknown."""
        self._pending += [gap for _, gap in self._step(first_seq)]
        self._last = last_seq

    def finish(self) -> list[Range]:
        """Gaps to report after the last command: those up to ``to_seq``, if it was given."""
        if self._to_seq is None or not self._open:
            return []
        if self._last is not None and self._last < self._to_seq:
            self._pending.append((self._last + 1, self._to_seq))
            self._last = self._to_seq
        gaps, self._pending = self._pending, []
        return gaps

    def _step(self, first: int) -> list[tuple[int, Range]]:
        if self._last is not None and first <= self._last:
            raise ArchiveError(
                f"seq {first} comes after seq {self._last}: the archive's segments are not in "
                "seq order or overlap; replica verify names the files"
            )
        if self._last is not None and first > self._last + 1:
            return [(0, (self._last + 1, first - 1))]
        return []

    def _gaps_in(self, seqs: pa.Array) -> list[tuple[int, Range]]:
        """Gaps before the i-th of ``seqs``, including one since the previous batch."""
        found = self._step(seqs[0].as_py())
        if len(seqs) > 1:
            steps = pc.pairwise_diff(seqs)
            if pc.min(steps).as_py() <= 0:
                raise ArchiveError(
                    f"seqs near {seqs[0].as_py()} are not strictly increasing; "
                    "replica verify names the file"
                )
            # indices_nonzero skips the null step before the first seq.
            for i in pc.indices_nonzero(pc.greater(steps, _ONE)).to_pylist():
                found.append((i, (seqs[i - 1].as_py() + 1, seqs[i].as_py() - 1)))
        self._last = seqs[-1].as_py()
        return found


class GapCauses:
    """The cause of a missing range, from the archive's gap records (read when first needed)."""

    def __init__(self, read: Callable[[], list[tuple[int, int, str]]]) -> None:
        self._read = read
        self._records: list[tuple[int, int, str]] | None = None

    def cause(self, low: int, high: int) -> str | None:
        if self._records is None:
            self._records = self._read()
        records = self._records
        causes: dict[str, None] = {}
        # Records are disjoint, so the first that can overlap starts just before ``low``.
        for from_seq, to_seq, cause in records[max(bisect_left(records, (low,)) - 1, 0) :]:
            if from_seq > high:
                break
            if to_seq >= low:
                causes[cause] = None
        return "+".join(causes) or None
