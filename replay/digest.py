"""A fingerprint of a replayed stream, to check that two runs, two copies of an archive, or a
replay and its consumer saw the same commands.

Definition: SHA-256 over, for each command in seq order, its seq as 8 bytes big-endian
(unsigned), its payload's length in bytes as 4 bytes big-endian (unsigned), then the payload
bytes. Timestamps are left out on purpose: the command stream is the seqs and payloads, and a
re-recorded copy of an archive has new receive times. Gaps change the digest only through the
seqs they remove. The length prefix keeps the encoding unambiguous (no two streams share it).
"""

from __future__ import annotations

import hashlib
import struct

_HEADER = struct.Struct(">QI")


class CommandDigest:
    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self.commands = 0

    def update(self, seq: int, raw: bytes) -> None:
        self._sha256.update(_HEADER.pack(seq, len(raw)))
        self._sha256.update(raw)
        self.commands += 1

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()
