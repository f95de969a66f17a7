"""The Disk-Sync feed's two text frames, defined once for the side that reads them (the
recorder) and the side that writes them (a replay):

    {"type":"connected","feed":"disk-sync","ts_ms":1710345600000}
    {"type":"replica_cmd","seq":482910553,"raw_hex":"0a1f...","ts_ms":1710345600123,
     "ingest_ts_us":1710345600123456,"publish_ts_us":1710345600123512}

The structs below are the format: field names, their order and the ranges a reader accepts.
``command_frame`` writes the same fields by hand because it is a replay's hottest line (an
f-string beats msgspec's encoder on kilobyte payloads); a round-trip property test holds the two
together. What a reader makes of a frame that does not fit is ``recorder.frames``' business.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Protocol

import msgspec

INT64_MAX = 2**63 - 1

Int64 = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
# Year 9999: beyond it a timestamp cannot name an archive's date partition. Defined here, not in
# schemas.archive, so that writing a frame (every CLI command's import) does not load pyarrow.
MAX_TS_MS = 253_402_300_799_999
TsMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_TS_MS)]


class ReplicaCmdFrame(msgspec.Struct, tag_field="type", tag="replica_cmd", gc=False):
    seq: Int64
    raw_hex: str
    ts_ms: TsMs
    ingest_ts_us: Int64
    publish_ts_us: Int64


class ConnectedFrame(msgspec.Struct, tag_field="type", tag="connected", gc=False):
    feed: str
    ts_ms: int


# Parses a frame's text into one of the two structs, checking every type and range in one pass.
decode_frame = msgspec.json.Decoder(ReplicaCmdFrame | ConnectedFrame).decode


class CommandFields(Protocol):
    """Anything that carries a command's frame fields (a recorder's Command, a ReplayRecord)."""

    @property
    def seq(self) -> int: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def ts_ms(self) -> int: ...
    @property
    def ingest_ts_us(self) -> int: ...
    @property
    def publish_ts_us(self) -> int: ...


def command_frame(cmd: CommandFields) -> str:
    """The feed frame that carries ``cmd``: keys in ``ReplicaCmdFrame``'s order, compact
    separators, lowercase hex, so the same command is always the same text."""
    return (
        f'{{"type":"replica_cmd","seq":{cmd.seq},"raw_hex":"{cmd.raw.hex()}",'
        f'"ts_ms":{cmd.ts_ms},"ingest_ts_us":{cmd.ingest_ts_us},'
        f'"publish_ts_us":{cmd.publish_ts_us}}}'
    )


def command_frames(
    seqs: Iterable[int],
    raws: Iterable[bytes],
    ts_ms: Iterable[int],
    ingest_ts_us: Iterable[int],
    publish_ts_us: Iterable[int],
) -> list[bytes]:
    """``command_frame`` of each command given as columns, UTF-8, in one pass: a relay frames
    every command it sends, so this skips a call and five attribute reads per command. The text
    is ``command_frame``'s, character for character (tests/test_frames.py holds them equal)."""
    return [
        f'{{"type":"replica_cmd","seq":{seq},"raw_hex":"{raw.hex()}",'
        f'"ts_ms":{ts},"ingest_ts_us":{ingest},"publish_ts_us":{publish}}}'.encode()
        for seq, raw, ts, ingest, publish in zip(
            seqs, raws, ts_ms, ingest_ts_us, publish_ts_us, strict=True
        )
    ]


def connected_frame(feed: str, ts_ms: int) -> str:
    """The greeting a feed sends after the upgrade."""
    return msgspec.json.encode(ConnectedFrame(feed, ts_ms)).decode()
