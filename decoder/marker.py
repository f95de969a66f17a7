"""What a decoded raw segment's files say about themselves: the metadata every one of them
carries, and the ``_segments`` marker written after them.

``decoder.archive`` writes both when it decodes a segment, ``decoder.compact`` when it merges
decoded segments; both read them back to decide whether a segment's decoded files are complete
and current. While the marker names the raw segment as that file is now, the segment's tables
are whole and were written by the decoder version it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
from replica.schemas.decoded import SEGMENTS_SCHEMA
from replica.schemas.metadata import DECODER_KEY, RAW_SEGMENT_KEY


def raw_segment_id(raw: Path) -> bytes:
    """How decoded files name their raw segment: its size and name, so that a raw file
    written again under the same name with other content is not mistaken for the one decoded."""
    return f"{raw.stat().st_size}:{raw.name}".encode()


def decoded_metadata(version: bytes, raw: Path) -> dict[bytes, bytes]:
    """The metadata of every decoded file of ``raw``, written by decoder ``version``."""
    return {DECODER_KEY: version, RAW_SEGMENT_KEY: raw_segment_id(raw)}


def marker_table(rows: Mapping[str, int], metadata: Mapping[bytes, bytes]) -> pa.Table:
    """The ``_segments`` file of a decoded segment: the rows each table got."""
    table = pa.table({"table": list(rows), "rows": list(rows.values())}, schema=SEGMENTS_SCHEMA)
    return table.replace_schema_metadata(metadata)


def decoded_by(metadata: Mapping[bytes, bytes] | None, raw: Path) -> bytes | None:
    """The decoder version that a decoded file's ``metadata`` names, if the file was decoded
    from ``raw`` as it is now; None if from another file, or in an earlier version's layout."""
    metadata = metadata or {}
    if metadata.get(RAW_SEGMENT_KEY) != raw_segment_id(raw):
        return None
    return metadata.get(DECODER_KEY)
