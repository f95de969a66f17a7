"""replica: archive and replay Hyperliquid replica commands from the Disk-Sync feed.

The Python API is the CLI's engine: ``Recorder`` runs inside any asyncio program,
``decode(ARCHIVE)`` writes the decoded tables (``Decoder`` decodes payloads in memory), and
``open(ARCHIVE).replay(...)`` gives the archived commands back for ``for`` or ``async for``, and
``connect(ARCHIVE)`` is a DuckDB connection with a view of every table, and ``heal(ARCHIVE,
SOURCES)`` fills an archive's gaps from other archives of the same feed.

Each name is imported from its stage on first use, so that ``import replica`` (and every
``replica`` command, which imports this package) loads only the stage it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from replica.recorder import __version__
from replica.schemas.errors import (
    ArchiveError,
    ArchiveLocked,
    AuthRefused,
    GapInRange,
    NotAnArchive,
    NothingRecorded,
    ReplicaError,
    UsageError,
)

if TYPE_CHECKING:
    from replica.archive import Archive, DecodedCommand, open
    from replica.decoder.archive import DecodeSummary, MessageSpec
    from replica.decoder.archive import decode_archive as decode
    from replica.decoder.core import Decoder
    from replica.maintenance.compact import CompactSummary, compact
    from replica.maintenance.heal import HealSummary, heal
    from replica.maintenance.node_import import ImportSummary, import_node
    from replica.maintenance.verify import GapRecord, Report, read_gaps, verify
    from replica.recorder.policy import BackoffPolicy
    from replica.recorder.recorder import Recorder, RecorderConfig, Summary
    from replica.replay.records import ReplayGap, ReplayRecord
    from replica.replay.stream import Replay
    from replica.sql import connect

# name -> (module, attribute)
_LAZY = {
    "DecodeSummary": ("replica.decoder.archive", "DecodeSummary"),
    "MessageSpec": ("replica.decoder.archive", "MessageSpec"),
    "decode": ("replica.decoder.archive", "decode_archive"),
    "Decoder": ("replica.decoder.core", "Decoder"),
    "ImportSummary": ("replica.maintenance.node_import", "ImportSummary"),
    "import_node": ("replica.maintenance.node_import", "import_node"),
    "BackoffPolicy": ("replica.recorder.policy", "BackoffPolicy"),
    "Recorder": ("replica.recorder.recorder", "Recorder"),
    "RecorderConfig": ("replica.recorder.recorder", "RecorderConfig"),
    "Summary": ("replica.recorder.recorder", "Summary"),
    "GapRecord": ("replica.maintenance.verify", "GapRecord"),
    "Report": ("replica.maintenance.verify", "Report"),
    "read_gaps": ("replica.maintenance.verify", "read_gaps"),
    "verify": ("replica.maintenance.verify", "verify"),
    "ReplayGap": ("replica.replay.records", "ReplayGap"),
    "ReplayRecord": ("replica.replay.records", "ReplayRecord"),
    "Replay": ("replica.replay.stream", "Replay"),
    "Archive": ("replica.archive", "Archive"),
    "DecodedCommand": ("replica.archive", "DecodedCommand"),
    "open": ("replica.archive", "open"),
    "CompactSummary": ("replica.maintenance.compact", "CompactSummary"),
    "compact": ("replica.maintenance.compact", "compact"),
    "connect": ("replica.sql", "connect"),
    "HealSummary": ("replica.maintenance.heal", "HealSummary"),
    "heal": ("replica.maintenance.heal", "heal"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'replica' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Archive",
    "ArchiveError",
    "ArchiveLocked",
    "AuthRefused",
    "BackoffPolicy",
    "CompactSummary",
    "DecodeSummary",
    "DecodedCommand",
    "Decoder",
    "GapInRange",
    "GapRecord",
    "HealSummary",
    "ImportSummary",
    "MessageSpec",
    "NotAnArchive",
    "NothingRecorded",
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
    "compact",
    "connect",
    "decode",
    "heal",
    "import_node",
    "open",
    "read_gaps",
    "verify",
]
