"""replica: archive and replay Hyperliquid replica commands from the Disk-Sync feed.

The Python API is the CLI's engine: ``Recorder`` runs inside any asyncio program, and
``open(ARCHIVE).replay(...)`` gives the archived commands back for ``for`` or ``async for``.
"""

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
    "DecodedCommand",
    "GapInRange",
    "GapRecord",
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
    "open",
    "read_gaps",
    "verify",
]
