"""replica: archive and replay Hyperliquid replica commands from the Disk-Sync feed.

The Python API is the CLI's engine: ``Recorder`` runs inside any asyncio program,
``decode(ARCHIVE)`` writes the decoded tables (``Decoder`` decodes payloads in memory), and
``open(ARCHIVE).replay(...)`` gives the archived commands back for ``for`` or ``async for``.
"""

from decoder.archive import DecodeSummary, MessageSpec
from decoder.archive import decode_archive as decode
from decoder.core import Decoder
from recorder import __version__
from recorder.policy import BackoffPolicy
from recorder.recorder import Recorder, RecorderConfig, Summary
from recorder.verify import GapRecord, Report, read_gaps, verify
from replay.records import ReplayGap, ReplayRecord
from replay.stream import Replay
from replica.archive import Archive, DecodedCommand, open
from schemas.errors import (
    ArchiveError,
    ArchiveLocked,
    AuthRefused,
    GapInRange,
    ReplicaError,
    UsageError,
)

__all__ = [
    "Archive",
    "ArchiveError",
    "ArchiveLocked",
    "AuthRefused",
    "BackoffPolicy",
    "DecodeSummary",
    "DecodedCommand",
    "Decoder",
    "GapInRange",
    "GapRecord",
    "MessageSpec",
    "Recorder",
    "RecorderConfig",
    "Replay",
    "ReplayGap",
    "ReplayRecord",
    "ReplicaError",
    "Report",
    "Summary",
    "UsageError",
    "__version__",
    "decode",
    "open",
    "read_gaps",
    "verify",
]
