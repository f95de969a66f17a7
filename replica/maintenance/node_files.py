"""The replica_cmds files a Hyperliquid node writes: finding them, and reading one into blocks.

A file is named by a block height n (``replica_cmds/<start>/<date>/<n>``, or ``<n>.lz4`` once
compressed) and holds blocks n+1, n+2, ... one JSON object per line. The node appends to the
newest file as blocks commit, so its last line may be unfinished; every other line is whole.

Parsing a line is a pure function of its bytes (``block_time_us``, ``parse_lines``); only
``read_blocks`` opens files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lz4.frame
import msgspec

from replica.schemas.errors import UsageError
from replica.schemas.nodetime import block_time_ns

_HEIGHT_NAME = re.compile(r"^([0-9]+)(\.lz4)?$")


class _AbciBlock(msgspec.Struct):
    time: str
    round: int | None = None  # the consensus round: rises from block to block, but skips


class _Block(msgspec.Struct):
    abci_block: _AbciBlock


_decode_block = msgspec.json.Decoder(_Block).decode


class BadLine(ValueError):
    """A line that is not a node block; ``number`` counts from 1."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number}: {reason}")
        self.number = number
        self.reason = reason

    def __reduce__(self) -> tuple[type[BadLine], tuple[int, str]]:
        """Pickled by its arguments, to come back from a cluster worker (``unfinished``)."""
        return BadLine, (self.number, self.reason)


@dataclass(frozen=True)
class NodeFile:
    path: Path
    height: int  # its first line is block height + 1


@dataclass
class Blocks:
    """The whole lines of one file, as columns: line i (from 0) is seq ``first_seq + i``."""

    first_seq: int
    time_us: list[int] = field(default_factory=list)
    round: list[int | None] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    unfinished: BadLine | None = None  # the last line, skipped until the node completes it

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.raw) - 1


def height_of(path: Path) -> int | None:
    match = _HEIGHT_NAME.match(path.name)
    return int(match[1]) if match else None


def node_files(paths: Iterable[str | os.PathLike[str]]) -> list[NodeFile]:
    """The files named by ``paths`` and those under its directories, in height order.

    A file named on its own must be named by a height; under a directory, other files are not
    the node's and are passed over.
    """
    found: dict[Path, NodeFile] = {}
    for path in map(Path, paths):
        if path.is_dir():
            candidates = [p for p in path.rglob("*") if p.is_file()]
        elif path.is_file():
            if height_of(path) is None:
                raise UsageError(
                    f"{path}: a replica_cmds file is named by its block height "
                    "(digits, with .lz4 if compressed)"
                )
            candidates = [path]
        else:
            raise UsageError(f"{path} does not exist")
        for candidate in candidates:
            height = height_of(candidate)
            if height is not None:
                found.setdefault(candidate.resolve(), NodeFile(candidate, height))
    return sorted(found.values(), key=lambda f: (f.height, str(f.path)))


def block_time_us(line: bytes) -> int:
    """The block's time (``abci_block.time``, UTC nanosecond text) floored to microseconds."""
    return block_round_time(line)[1]


def block_round_time(line: bytes) -> tuple[int | None, int]:
    """The block's round (None if it has none) and its time floored to microseconds."""
    try:
        abci = _decode_block(line).abci_block
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a node block: {exc}") from None
    return abci.round, block_time_ns(abci.time) // 1000


def parse_lines(first_seq: int, lines: Iterable[bytes]) -> Blocks:
    """Each line (with its newline) into a block; raises ``BadLine`` for a bad line that is not
    the last. A bad or newline-less last line is one the node is still writing: it is left out
    and named in ``unfinished``."""
    blocks = Blocks(first_seq)
    bad: BadLine | None = None
    for number, line in enumerate(lines, 1):
        if bad is not None:
            raise bad
        if not line.endswith(b"\n"):
            bad = BadLine(number, "no newline at its end")
            continue
        payload = line[:-1]
        try:
            round_, time_us = block_round_time(payload)
        except ValueError as exc:
            bad = BadLine(number, str(exc))
            continue
        blocks.round.append(round_)
        blocks.time_us.append(time_us)
        blocks.raw.append(payload)
    blocks.unfinished = bad
    return blocks


def _lines(path: Path) -> Iterator[bytes]:
    """The file's lines, decompressed on the fly if it is ``.lz4``: never whole in memory."""
    if path.suffix != ".lz4":
        with open(path, "rb") as source:
            yield from source
        return
    try:
        with lz4.frame.open(path, "rb") as source:
            yield from source
    except (EOFError, RuntimeError) as exc:  # how lz4.frame reports a damaged frame
        raise OSError(f"cannot decompress: {exc}") from None


def read_blocks(node_file: NodeFile) -> Blocks:
    """Raises ``BadLine``, or ``OSError`` (also for a damaged .lz4 file) if it cannot be read."""
    return parse_lines(node_file.height + 1, _lines(node_file.path))
