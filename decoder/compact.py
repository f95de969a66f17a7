"""The decoded side of compaction: what becomes of the decoded files of merged raw segments.

Decoded files are named after their raw segment, so merging raw segments orphans theirs. When
every input of a merge was decoded completely by one decoder version, its files are merged too,
table by table, and a ``_segments`` marker names the merged segment: ``replica decode`` finds it
current and does nothing. Otherwise the inputs' files are dropped, and the next
``replica decode`` decodes the merged segment once, as it would any new segment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.decoder.marker import decoded_by, decoded_metadata, marker_table
from replica.schemas.archive import RAW_ROW_GROUP_ROWS, Segment
from replica.schemas.concat import concatenate
from replica.schemas.decoded import DECODED_DIR, DECODED_ZSTD_LEVEL, SEGMENTS_TABLE, decoded_path
from replica.schemas.files import publish_parquet
from replica.schemas.metadata import DECODER_KEY

_OPTIONS = {"compression": "zstd", "compression_level": DECODED_ZSTD_LEVEL}
# The largest row groups decode writes (one per raw row group, for tables of one row per
# command): merged files get those throughout.
ROW_GROUP_ROWS = RAW_ROW_GROUP_ROWS


@dataclass(frozen=True)
class DecodedMerge:
    """A merged raw segment's decoded output, merged from its inputs' unless ``version`` is
    None (their output is dropped: incomplete, stale, or never written)."""

    merged: Segment  # the new raw segment, where it is being built
    version: bytes | None = None
    sources: dict[str, list[Path]] = field(default_factory=dict)  # table -> inputs' files
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows over the inputs


@dataclass
class DecodedPlan:
    retired: dict[str, set[str]]  # table -> names of the inputs' files it holds
    merges: list[DecodedMerge]

    def write(self, staged: Mapping[str, Path]) -> None:
        """Write every merged file into ``staged``, the new directory of each table."""
        for merge in self.merges:
            if merge.version is not None:
                _write_merge(merge, staged)


def plan_decoded(
    root: Path, partition: str, merges: list[tuple[Segment, tuple[Segment, ...]]]
) -> DecodedPlan:
    """What to do with the decoded files of each (merged segment, its inputs) of one day."""
    top = root / DECODED_DIR
    tables = (
        sorted(p.name for p in top.iterdir() if (p / partition).is_dir()) if top.is_dir() else []
    )
    names = {segment.path.name for _, inputs in merges for segment in inputs}
    retired = {}
    for table in tables:
        held = {name for name in names if (top / table / partition / name).is_file()}
        if held:
            retired[table] = held
    plan = [_plan_merge(root, merged, inputs) for merged, inputs in merges]
    return DecodedPlan(retired, plan)


def _plan_merge(root: Path, merged: Segment, inputs: tuple[Segment, ...]) -> DecodedMerge:
    """Merge when each input's marker names the input as it is now and one decoder version, and
    each table file it lists is there with the rows it says; otherwise drop."""
    versions = set()
    sources: dict[str, list[Path]] = {}
    rows: Counter[str] = Counter()
    for segment in inputs:
        try:
            marker = pq.read_table(decoded_path(root, SEGMENTS_TABLE, segment))
        except (OSError, pa.ArrowException):
            return DecodedMerge(merged)
        version = decoded_by(marker.schema.metadata, segment.path)
        if version is None:
            return DecodedMerge(merged)
        versions.add(version)
        tables, counts = marker.column("table").to_pylist(), marker.column("rows").to_pylist()
        for table, count in zip(tables, counts, strict=True):
            path = decoded_path(root, table, segment)
            try:
                written = pq.read_metadata(path)
            except (OSError, pa.ArrowException):
                return DecodedMerge(merged)
            if written.num_rows != count or (written.metadata or {}).get(DECODER_KEY) != version:
                return DecodedMerge(merged)
            sources.setdefault(table, []).append(path)
            rows[table] += count
    if len(versions) != 1:
        return DecodedMerge(merged)
    return DecodedMerge(merged, versions.pop(), sources, dict(sorted(rows.items())))


def _write_merge(merge: DecodedMerge, staged: Mapping[str, Path]) -> None:
    """Each table's files concatenated in seq order, then the marker, all carrying the merged
    segment as their source."""
    assert merge.version is not None
    metadata = decoded_metadata(merge.version, merge.merged.path)
    name = merge.merged.path.name
    for table, paths in merge.sources.items():
        schema = pq.read_schema(paths[0]).with_metadata(metadata)
        concatenate(paths, staged[table] / name, schema, ROW_GROUP_ROWS, **_OPTIONS)
    publish_parquet(marker_table(merge.rows, metadata), staged[SEGMENTS_TABLE] / name, **_OPTIONS)
