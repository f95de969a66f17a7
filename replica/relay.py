"""``replica record --serve``: the recorder serves what it records, live and from any past seq.

It composes the recorder stage with the replay stage's ``LiveHub`` and ``DiskSyncServer`` on
the recorder's own event loop (stages never import each other; this module imports both). The
recorder calls ``publish`` with each batch of commands once they are on the spool; the hub only
appends them to each client's bounded buffer, so a client that cannot keep up is closed with
1013 and never slows the recording or the other clients.

A client with ``from_seq`` is served as ``serve --follow`` serves it (``follow_frames``): it
subscribes, then reads the sealed segments and the spool from ``from_seq``, then its buffer.
Because a command is published only after its spool write, whatever was published before the
client subscribed is on disk for that read: no gap and no duplicate at the seam.
"""

from __future__ import annotations

from pathlib import Path

from replica.recorder.relay import ArchivedCommand
from replica.replay.live import LiveHub, follow_frames
from replica.replay.server import DiskSyncServer
from replica.schemas.archive import ArchiveLayout
from replica.schemas.errors import ReplicaError


class RecordRelay:
    """The clients' side of a recording: ``publish`` is the recorder's ``on_archived``."""

    def __init__(self, archive: Path, api_key: str | None) -> None:
        self.hub = LiveHub()  # its ``clients`` and ``backlog()`` are the relay's load
        source = follow_frames(ArchiveLayout(Path(archive)), self.hub)
        self.server = DiskSyncServer(source, api_key=api_key)

    def publish(self, batch: list[ArchivedCommand]) -> None:
        self.hub.publish(batch)  # its rows are a ReplayRecord's first fields, in order

    async def start(self, host: str, port: int) -> int:
        """Listens; returns the port (0 picks a free one)."""
        try:
            return await self.server.start(host, port)
        except OSError as exc:
            raise ReplicaError(
                f"cannot serve on {host}:{port} (--serve): {exc.strerror or exc}"
            ) from None

    async def close(self) -> None:
        """Closes every client with 1001 (going away), as the feed does when it restarts."""
        await self.server.close()
