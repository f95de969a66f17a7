"""Deciding what each seq means: the next command, a duplicate, or the end of a gap.

The tracker's whole state is ``TrackerState``: the spool writes it at the head of every file, so
a recovery replays frames from exactly the state the live recorder had.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from replica.schemas.seqranges import span


class Cause(StrEnum):
    """Why seqs went missing, as far as the recorder can tell."""

    JUMP = "jump"  # the feed skipped seqs within one connection
    RECONNECT = "reconnect"  # seqs sent while the recorder was reconnecting
    RESTART = "restart"  # seqs sent while no recorder was running


@dataclass
class TrackerState:
    last_seq: int | None = None
    last_ts_ms: int | None = None
    # What happened since the last appended command that could explain a gap.
    pending: Cause | None = None

    def to_json(self) -> dict[str, object]:
        return {"last_seq": self.last_seq, "last_ts_ms": self.last_ts_ms, "pending": self.pending}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TrackerState:
        last_seq, last_ts_ms, pending = data["last_seq"], data["last_ts_ms"], data["pending"]
        return cls(
            last_seq if isinstance(last_seq, int) else None,
            last_ts_ms if isinstance(last_ts_ms, int) else None,
            Cause(pending) if isinstance(pending, str) and pending else None,
        )


@dataclass(frozen=True)
class Gap:
    from_seq: int
    to_seq: int
    cause: Cause
    before_ts_ms: int | None

    @property
    def missing(self) -> int:
        return span(self.from_seq, self.to_seq)


class Verdict(StrEnum):
    APPEND = "append"
    DUPLICATE = "duplicate"


APPEND: Final = Verdict.APPEND
DUPLICATE: Final = Verdict.DUPLICATE


class SeqTracker:
    def __init__(self, state: TrackerState) -> None:
        self.state = state

    def connection_opened(self) -> None:
        if self.state.pending is not Cause.RESTART:
            self.state.pending = Cause.RECONNECT

    def observe(self, seq: int, ts_ms: int) -> Verdict | Gap:
        """APPEND, DUPLICATE, or the Gap that ``seq`` closes (the command is appended too)."""
        state = self.state
        last = state.last_seq
        if last is not None and seq <= last:
            return DUPLICATE
        verdict: Verdict | Gap = APPEND
        if last is not None and seq != last + 1:
            verdict = Gap(last + 1, seq - 1, state.pending or Cause.JUMP, state.last_ts_ms)
        state.last_seq = seq
        state.last_ts_ms = ts_ms
        state.pending = None
        return verdict
