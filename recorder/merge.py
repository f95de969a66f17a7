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
