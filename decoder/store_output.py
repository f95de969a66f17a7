"""Decoding a segment of an archive on an object store, which has no rename to replace a file.

The segment is decoded into a local scratch directory laid out like the archive (``decode_segment``
there, unchanged), and the files go up to their final keys in the order the local decode keeps:
the tables first, each visible only once its upload completes (``schemas.transfer``), then the
stale outputs of an earlier decode are deleted, and the ``_segments`` marker goes up last. A run
killed at any point leaves the old marker, or none, beside whole files: the segment is only
decoded again. So each segment is its own unit of work: ``--jobs`` worker processes and cluster
tasks run this, each in a scratch directory of its own, on the segments they are given.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs as pafs
from replica.decoder.core import Decoder
from replica.schemas.archive import Segment
from replica.schemas.decoded import DECODED_DIR, SEGMENTS_TABLE, decoded_path
from replica.schemas.storage import Location
from replica.schemas.storepath import StorePath
from replica.schemas.transfer import SealedFile, copy_with_retries

DecodeSegment = Callable[[Path, Segment, Decoder], dict[str, int]]


def decode_segment_to_store(
    root: StorePath, segment: Segment, decoder: Decoder, decode_locally: DecodeSegment
) -> dict[str, int]:
    """``decode_locally`` (``decode_segment``) for an archive whose ``root`` is on a store."""
    with tempfile.TemporaryDirectory(prefix="replica-decode-") as scratch:
        counts = decode_locally(Path(scratch), segment, decoder)
        local = Location(pafs.LocalFileSystem(), scratch, scratch)
        store = Location(root.location.filesystem, root.key, str(root))

        def upload(table: str) -> None:
            relative = decoded_path(Path(), table, segment).as_posix()
            size = (Path(scratch) / relative).stat().st_size
            copy_with_retries(local, store, SealedFile(relative, size))

        for table in counts:
            upload(table)
        top = root / DECODED_DIR
        for table_dir in top.iterdir() if top.is_dir() else ():
            if table_dir.name not in {SEGMENTS_TABLE, *counts}:
                decoded_path(root, table_dir.name, segment).unlink(missing_ok=True)
        upload(SEGMENTS_TABLE)
    return counts
