"""What an archive's seqs count: the feed's commands, or a node's block heights.

The two are unrelated numbers (a feed seq near 10^9 says nothing about block 5 * 10^8), so one
archive holds one kind: mixing them makes seq ranges, gaps and completeness meaningless. The
command that creates an archive (``replica record``: feed, ``replica import-node``: node)
writes the kind to ``ARCHIVE/seq-space``; every writer after it must be of the same kind.

An archive made before the marker existed is classified by its raw segments' metadata, which
names their source (``replica.source``): a node file (``node replica_cmds <height>``) makes a
node segment, anything else (a feed URL, or no metadata) a feed segment. The kind found is then
written down, so the footers are read once. An archive holding both kinds is refused until
someone moves one kind out or writes the marker by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

from replica.schemas.archive import ArchiveLayout, Segment
from replica.schemas.errors import ArchiveError, UsageError
from replica.schemas.files import fsync_dir, temporary_path
from replica.schemas.metadata import SOURCE_KEY
from replica.schemas.storepath import read_schema

FEED = "feed"
NODE = "node"
MARKER = "seq-space"
# ``replica.source`` of a segment imported from a node file begins with this.
NODE_SOURCE_PREFIX = "node replica_cmds"

_MEANING = {FEED: "feed commands", NODE: "node block heights"}


def meaning(kind: str) -> str:
    return _MEANING[kind]


def marker_path(root: Path) -> Path:
    return root / MARKER


def segment_kind(path: Path) -> str:
    """The kind of one raw segment, from the source its metadata names."""
    try:
        metadata = read_schema(path).metadata or {}
    except Exception as exc:
        raise ArchiveError(f"cannot read the schema of {path}: {exc}") from exc
    source = metadata.get(SOURCE_KEY, b"").decode(errors="replace")
    return NODE if source.startswith(NODE_SOURCE_PREFIX) else FEED


def recorded_kind(layout: ArchiveLayout, segments: list[Segment] | None = None) -> str | None:
    """The archive's kind: its marker's, else inferred from ``segments`` (by default all of
    them); None for an archive with neither (nothing recorded yet)."""
    marker = marker_path(layout.root)
    try:
        text = marker.read_text().strip()
    except FileNotFoundError:
        return _inferred(layout, layout.segments() if segments is None else segments)
    except OSError as exc:
        raise ArchiveError(f"cannot read {marker}: {exc}") from exc
    if text not in _MEANING:
        raise ArchiveError(f"{marker} holds {text[:40]!r}; it must hold 'feed' or 'node'")
    return text


def _inferred(layout: ArchiveLayout, segments: list[Segment]) -> str | None:
    """From the segments that read: an unreadable one is ``verify``'s to report."""
    seen: dict[str, Path] = {}
    for segment in segments:
        try:
            kind = segment_kind(segment.path)
        except ArchiveError:
            continue
        seen.setdefault(kind, segment.path)
        if len(seen) == 2:
            raise UsageError(
                f"{layout.root} holds both feed segments (e.g. {seen[FEED]}) and node segments "
                f"(e.g. {seen[NODE]}), whose seqs are unrelated; move one kind out, or write "
                f"'feed' or 'node' to {marker_path(layout.root)} to say which it is"
            )
    return next(iter(seen), None)


def claim(layout: ArchiveLayout, kind: str, writer: str) -> None:
    """Make sure ``writer`` (a command, for the message), writing seqs of ``kind``, may write
    this archive, and record the kind if the archive has no marker yet. Raises ``UsageError``
    (exit 2) for an archive of the other kind. The caller holds the archive's writer lock."""
    found = recorded_kind(layout)
    if found is not None and found != kind:
        raise UsageError(refusal(layout.root, found, writer, kind))
    if not marker_path(layout.root).exists():
        write_marker(layout.root, kind)


def refusal(root: Path, kind: str, writer: str, other: str) -> str:
    return (
        f"{root} holds seqs that are {meaning(kind)}; {writer} writes {meaning(other)}, which "
        f"would mix two unrelated seq spaces: use another archive"
    )


def write_marker(root: Path, kind: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    marker = marker_path(root)
    tmp = temporary_path(marker)
    with open(tmp, "w") as sink:
        sink.write(kind + "\n")
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(tmp, marker)
    fsync_dir(root)
