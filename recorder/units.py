"""What the session hands the I/O layer: spool records and operations, and the units it seals.

Kept apart from ``session.py`` (the decisions) so that the spool, the writers and the segment
publisher depend on these shapes alone.
"""

from __future__ import annotations

import hashlib
import secrets
from array import array
from dataclasses import dataclass, field
from typing import NamedTuple

from replica.recorder.frames import Command
from replica.recorder.quarantine import TooBig, UnitQuarantine
from replica.recorder.seq import Gap


class Closed(NamedTuple):
    """An endpoint's connection ended, and why (a close code or an error, without secrets)."""

    why: str


class Carried(NamedTuple):
    """A command waiting for the seqs before it when its unit was sealed: the next unit's spool
    starts with these, so that it replays alone (they are not deliveries)."""

    cmd: Command


class Echo(NamedTuple):
    """A frame identical, text for text, to one that delivered ``seq`` first (archived, or
    held until it is): a duplicate, known without a parse."""

    seq: int


class Release(NamedTuple):
    """The wait for missing seqs was re-examined at this record's time (``force``: given up,
    as at a stop). Spooled whenever it can change what is archived, so a replay decides alike."""

    force: bool


Item = Command | TooBig | Closed | Carried | Release | Echo | str | bytes | None


class Via(NamedTuple):
    """A record of endpoint ``endpoint`` >= 1; endpoint 0's records are spooled bare, so a
    one-URL spool is what it always was."""

    endpoint: int
    item: Item


# A spool record: (recv_ts_us, item). The item is a decoded Command, the text (or bytes) of any
# other frame, a TooBig for a frame refused unread, None for a new connection, one of the
# markers above, or any of these wrapped in ``Via``.
SpoolRecord = tuple[int, Item | Via]


@dataclass(frozen=True)
class SpoolOpen:
    unit_id: str
    header: dict[str, object]


@dataclass(frozen=True)
class SpoolAppend:
    unit_id: str
    records: list[SpoolRecord]


@dataclass(frozen=True)
class SpoolClose:
    unit_id: str


SpoolOp = SpoolOpen | SpoolAppend | SpoolClose


@dataclass(frozen=True)
class GapRow:
    gap: Gap
    detected_ts_us: int
    after_ts_ms: int


@dataclass(frozen=True)
class ConnectionRow:
    """One connection of one endpoint, written when it ends."""

    endpoint: str
    connected_ts_us: int
    closed_ts_us: int
    why: str
    delivered: int
    won: int


def _int64s() -> array[int]:
    return array("q")


@dataclass
class RawRows:
    """Commands as the raw segment's columns: a unit's rows not yet handed to the writer."""

    seq: array[int] = field(default_factory=_int64s)
    ts_ms: array[int] = field(default_factory=_int64s)
    ingest_ts_us: array[int] = field(default_factory=_int64s)
    publish_ts_us: array[int] = field(default_factory=_int64s)
    recv_ts_us: array[int] = field(default_factory=_int64s)
    raw: list[bytes] = field(default_factory=list)

    @property
    def held_bytes(self) -> int:
        """Roughly the memory the rows hold: payloads, their bytes objects, five int64 columns."""
        return sum(map(len, self.raw)) + 73 * len(self.raw)


@dataclass
class RawChunk(RawRows):
    """A row group of an open unit's raw segment, handed to the writer before the unit is
    sealed, so that the recorder holds a row group of commands rather than a whole segment."""

    unit_id: str = ""
    hour: int = 0


@dataclass
class Unit(RawRows):
    """``seq`` ... ``raw`` hold the rows not yet handed to the writer as ``RawChunk``s (all of
    them when nothing is chunked); ``rows`` counts them all."""

    unit_id: str = ""
    opened_us: int = 0
    hour: int = 0  # the UTC hour of its first command (meaningless while it has none)
    rows: int = 0
    first_seq: int = 0  # of its first command (meaningless while it has none)
    chunked_last_seq: int = 0  # of the last command handed out in a chunk
    chunked_bytes: int = 0  # payload bytes handed out in chunks
    gaps: list[GapRow] = field(default_factory=list)
    quarantine: UnitQuarantine = field(default_factory=UnitQuarantine)
    payload_bytes: int = 0
    records: int = 0  # spool records, so that a unit with nothing in it is never sealed
    # Every delivery of a command when several endpoints are recorded: seq, endpoint, time.
    endpoints: tuple[str, ...] = ()
    arrival_seq: array[int] = field(default_factory=_int64s)
    arrival_endpoint: bytearray = field(default_factory=bytearray)
    arrival_recv_us: array[int] = field(default_factory=_int64s)
    connections: list[ConnectionRow] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.seq[-1] if self.seq else self.chunked_last_seq

    @property
    def held_bytes(self) -> int:
        """Roughly the memory the unit holds: its rows not chunked, the arrivals and the
        quarantine."""
        return (
            self.payload_bytes
            - self.chunked_bytes
            + 73 * len(self.raw)
            + 17 * len(self.arrival_seq)
            + self.quarantine.held_bytes
        )

    def take_chunk(self) -> RawChunk:
        """Hand the rows held so far out as a chunk (the unit keeps counting them)."""
        chunk = RawChunk(
            self.seq,
            self.ts_ms,
            self.ingest_ts_us,
            self.publish_ts_us,
            self.recv_ts_us,
            self.raw,
            unit_id=self.unit_id,
            hour=self.hour,
        )
        self.chunked_last_seq = self.seq[-1]
        self.chunked_bytes = self.payload_bytes
        self.seq, self.ts_ms, self.ingest_ts_us = _int64s(), _int64s(), _int64s()
        self.publish_ts_us, self.recv_ts_us, self.raw = _int64s(), _int64s(), []
        return chunk


def new_unit_id(now_us: int, after: str | None = None) -> str:
    """Sortable by time, unique even if the clock steps back across a restart. The unit after
    ``after`` sorts after it even when sealed in the same microsecond (recovery replays spools
    in name order), and gets an id derived from it, so that a replay that seals where the live
    session did names the next unit alike."""
    if after is None:
        return f"{now_us:017d}-{secrets.token_hex(4)}"
    prefix = after.partition("-")[0]
    opened = max(now_us, int(prefix) + 1) if prefix.isdigit() else now_us
    return f"{opened:017d}-{hashlib.blake2b(after.encode(), digest_size=4).hexdigest()}"


class RecentPayloads:
    """The payloads of the last ``size`` seqs, to tell a harmless duplicate from a conflict.

    Duplicates come right after a reconnect or restart, or from a second endpoint, so a window
    suffices; an older duplicate is counted but cannot be compared.
    """

    def __init__(self, size: int = 8192) -> None:
        if size & (size - 1):
            raise ValueError("size must be a power of two")
        self.size = size
        self._mask = size - 1
        self._seqs = [-1] * size
        self._raws: list[bytes | None] = [None] * size
        # With several endpoints: the frame texts of the last ``size`` seqs first delivered, so
        # that another endpoint's identical copy is known by its text alone, unparsed. Found by
        # the seq that endpoint delivers next, not by a hash of the text: no hashing of a frame
        # (SipHash of ~1 kB costs more than the whole comparison), no dict to keep.
        self._texts: list[str | None] = [None] * size
        self._text_seqs = [-1] * size

    def remember(self, seq: int, raw: bytes) -> None:
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._raws[slot] = raw

    def remember_text(self, seq: int, text: str) -> None:
        """``text`` delivered ``seq`` first (it is archived, or held until it is)."""
        slot = seq & self._mask
        self._text_seqs[slot] = seq
        self._texts[slot] = text

    def is_text_of(self, text: str, seq: int) -> bool:
        """Whether ``text`` is exactly the frame that delivered ``seq`` first, still remembered.
        An equal text is the same frame, its seq included: a copy, known without a parse."""
        slot = seq & self._mask
        return self._text_seqs[slot] == seq and self._texts[slot] == text

    def lookup(self, seq: int) -> bytes | None:
        slot = seq & self._mask
        return self._raws[slot] if self._seqs[slot] == seq else None


@dataclass
class SessionStats:
    frames: int = 0
    appended: int = 0
    duplicates: int = 0
    conflicts: int = 0
    quarantined: int = 0
    quarantined_kinds: dict[str, int] = field(default_factory=dict)  # by quarantine kind
    gaps: int = 0
    missing: int = 0
    connections: int = 0
    ts_back: int = 0  # commands filed under a later hour than their ts_ms's (a clock stepped back)
    first_seq: int | None = None
    last_lag_us: int | None = None  # recv_ts_us - publish_ts_us of the last command
