"""The state behind merging several endpoints' copies of one feed: who is connected and how far
each has delivered, and the commands held back while a missing seq may still come.

Pure data: ``FeedSession`` decides with it, and a unit's spool header carries the endpoints'
state (``EndpointState.to_json``) so that one unit's spool replays alone.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from replica.recorder.frames import Command

# Held commands above this many payload bytes give up their wait at once: the bound on what the
# wait for a slow endpoint can hold in memory, whatever the feed's rate and --gap-wait.
MAX_HELD_BYTES = 64 * 2**20


@dataclass
class EndpointState:
    connected: bool = False
    last_seq: int | None = None  # the last seq this connection delivered
    since_us: int = 0  # when this connection opened
    delivered: int = 0  # commands this connection delivered
    won: int = 0  # ... of which it delivered first (archived from it)

    def to_json(self) -> dict[str, object]:
        return {
            "connected": self.connected,
            "last_seq": self.last_seq,
            "since_us": self.since_us,
            "delivered": self.delivered,
            "won": self.won,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> EndpointState:
        last_seq = data["last_seq"]
        return cls(
            connected=bool(data["connected"]),
            last_seq=last_seq if isinstance(last_seq, int) else None,
            since_us=int(str(data["since_us"])),
            delivered=int(str(data["delivered"])),
            won=int(str(data["won"])),
        )


@dataclass
class EndpointTotals:
    """An endpoint's whole run, for the status line and the summary."""

    endpoint: str
    connections: int = 0
    delivered: int = 0
    won: int = 0
    last_close: str | None = None


class Held:
    """Commands that arrived ahead of a missing seq, by seq, with who delivered them and when."""

    def __init__(self) -> None:
        self._by_seq: dict[int, tuple[Command, int, int]] = {}
        self._heap: list[int] = []
        self.payload_bytes = 0

    def __len__(self) -> int:
        return len(self._by_seq)

    def __contains__(self, seq: int) -> bool:
        return seq in self._by_seq

    def raw(self, seq: int) -> bytes:
        return self._by_seq[seq][0].raw

    def add(self, cmd: Command, endpoint: int, recv_us: int) -> None:
        self._by_seq[cmd.seq] = (cmd, endpoint, recv_us)
        heapq.heappush(self._heap, cmd.seq)
        self.payload_bytes += len(cmd.raw)

    def first(self) -> tuple[Command, int, int]:
        return self._by_seq[self._heap[0]]

    def pop(self) -> tuple[Command, int, int]:
        held = self._by_seq.pop(heapq.heappop(self._heap))
        self.payload_bytes -= len(held[0].raw)
        return held

    def in_order(self) -> list[tuple[Command, int, int]]:
        return [self._by_seq[seq] for seq in sorted(self._heap)]


def could_deliver(states: list[EndpointState], seq: int, other_than: int | None = None) -> bool:
    """Whether an endpoint may still deliver ``seq``: one connected that has not passed it
    (feeds deliver in order), or one not connected (still connecting, or reconnecting: a
    lagging endpoint's new connection starts where it is, maybe below ``seq``)."""
    return any(
        not state.connected or state.last_seq is None or state.last_seq < seq
        for endpoint, state in enumerate(states)
        if endpoint != other_than
    )


def releasable(
    held: Held, states: list[EndpointState], last_seq: int | None, gap_wait_us: int, now_us: int
) -> bool:
    """Whether the first held command is due: next in seq order, or its wait for the seqs
    before it is over (no endpoint can still deliver them, ``gap_wait_us`` passed since it
    arrived, or the held commands fill ``MAX_HELD_BYTES``)."""
    cmd, _, recv_us = held.first()
    if last_seq is not None and cmd.seq == last_seq + 1:
        return True
    # The first seq missing before it; before anything was archived, any lower seq.
    missing = cmd.seq - 1 if last_seq is None else last_seq + 1
    return (
        now_us - recv_us >= gap_wait_us
        or held.payload_bytes >= MAX_HELD_BYTES
        or not could_deliver(states, missing)
    )
