"""replica: archive and replay Hyperliquid replica commands from the Disk-Sync feed.

The Python API is the CLI's engine: ``Recorder`` runs inside any asyncio program.
"""

from recorder import __version__
from recorder.policy import BackoffPolicy
from recorder.recorder import Recorder, RecorderConfig, Summary
from recorder.verify import GapRecord, Report, read_gaps, verify
from schemas.errors import (
    ArchiveError,
    ArchiveLocked,
    AuthRefused,
    ReplicaError,
    UsageError,
)

__all__ = [
    "ArchiveError",
    "ArchiveLocked",
    "AuthRefused",
    "BackoffPolicy",
    "GapRecord",
    "Recorder",
    "RecorderConfig",
    "ReplicaError",
    "Report",
    "Summary",
    "UsageError",
    "__version__",
    "read_gaps",
    "verify",
]
