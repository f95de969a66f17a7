"""Whether node blocks stored at consecutive heights are in the node's order.

A block carries its consensus round, not its height, and rounds skip, so no single block
confirms the height a file's name and line gave it. Two blocks one after the other do say
something: a later height has a higher round and a block time no earlier. A pair that breaks
this means files renamed, mixed from two nodes or chains, or out of order, and is reported
where it is (``import-node`` by file and line, ``verify`` by segment and seq) without refusing
anything: the blocks themselves are whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from replica.maintenance.node_files import block_round_time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PER_FILE = 5  # problems reported per file: a shuffled file would otherwise give one a block


@dataclass(frozen=True)
class BlockMark:
    """One block's place (``where``: "file:line" or "segment seq N"), seq, round and time."""

    where: str
    seq: int
    round: int | None
    time_us: int


class OrderCheck:
    """Fed blocks in seq order; ``check`` returns what is wrong with each against the last."""

    def __init__(self) -> None:
        self._last: BlockMark | None = None

    def check(self, mark: BlockMark) -> list[str]:
        last, self._last = self._last, mark
        if last is None:
            return []
        problems = []
        if mark.round is not None and last.round is not None and mark.round <= last.round:
            problems.append(
                f"{mark.where}: block {mark.seq} has round {mark.round}, not above round "
                f"{last.round} of block {last.seq} ({last.where}): files renamed, mixed or out "
                "of order?"
            )
        if mark.time_us < last.time_us:
            problems.append(
                f"{mark.where}: block {mark.seq} has time {_utc(mark.time_us)}, before "
                f"{_utc(last.time_us)} of block {last.seq} ({last.where}): files renamed, "
                "mixed or out of order?"
            )
        return problems

    def follow(self, mark: BlockMark) -> None:
        """Take ``mark`` as the last block, unchecked: the last of a segment checked elsewhere
        (a cluster worker), whose first block ``check`` has just been given."""
        self._last = mark


def _utc(time_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=time_us)).strftime("%Y-%m-%dT%H:%M:%S.%f")


def segment_problems(
    path: Path, seqs: list[int], payloads: list[bytes], order: OrderCheck
) -> list[str]:
    """The order problems of one raw segment of a node archive, after the segments before it:
    the first few. Payloads that are not blocks are the decoder's to
    report (``undecoded``), not this check's."""
    found: list[str] = []
    for seq, payload in zip(seqs, payloads, strict=True):
        try:
            round_, time_us = block_round_time(payload)
        except ValueError:
            continue
        found += order.check(BlockMark(f"{path} seq {seq}", seq, round_, time_us))
    return capped(found, path)


def capped(found: list[str], path: Path) -> list[str]:
    """The first few problems of one file, then how many more."""
    if len(found) > PER_FILE:
        return [*found[:PER_FILE], f"{path}: {len(found) - PER_FILE} more blocks out of order"]
    return found
