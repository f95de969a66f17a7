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

A recording to an object store keeps its spool, and each sealed file until it is uploaded, in
its local staging directory (``--spool-dir``): its clients read the past from ``StagedStore``,
the store's segments and the staging directory's together.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from replica.recorder.relay import ArchivedColumns
from replica.replay.live import LiveHub, follow_frames
from replica.replay.server import DiskSyncServer
from replica.schemas.archive import ArchiveLayout, Segment
from replica.schemas.errors import ReplicaError


class StagedStore(ArchiveLayout):
    """What a recorder writing to a store has archived, seen from its own machine: the spool
    and the sealed files not uploaded yet in ``staging``, and the segments on ``store``. A
    segment in both (uploaded, not yet removed here) is read from here; one removed from here
    under a read is read again from the store (``read_selected`` lists again)."""

    def __init__(self, staging: Path, store: ArchiveLayout) -> None:
        super().__init__(staging)
        self._store = store

    def _named_segments(self, day: date | None) -> list[Segment]:
        local = super()._named_segments(day)
        here = {(segment.first_seq, segment.last_seq) for segment in local}
        stored = self._store._named_segments(day)
        return local + [s for s in stored if (s.first_seq, s.last_seq) not in here]


class RecordRelay:
    """The clients' side of a recording: ``publish`` is the recorder's ``on_archived``."""

    def __init__(self, layout: ArchiveLayout, api_key: str | None) -> None:
        self.hub = LiveHub()  # its ``clients`` and ``backlog()`` are the relay's load
        source = follow_frames(layout, self.hub)
        self.server = DiskSyncServer(source, api_key=api_key)

    def publish(self, archived: ArchivedColumns) -> None:
        self.hub.publish(archived)

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
