"""What ``replica heal`` fills an archive from: another archive of the same feed, or a node's
replica_cmds files, read as chunks of raw rows in seq order.

A source is only ever read. An archive source, on a disk or an object store (``s3://...``, read
as the readers read one, see ``schemas.storepath``), is read a row group at a time; a node file
(local) whole, its rows computed as ``replica import-node`` computes them, so a block healed
from a file is byte for byte the block an import of that file would have written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from replica.maintenance.node_files import BadLine, node_files, read_blocks
from replica.maintenance.node_import import blocks_table, node_metadata, order_warnings
from replica.maintenance.node_order import OrderCheck
from replica.schemas.archive import RAW_SCHEMA, ArchiveLayout
from replica.schemas.errors import ArchiveError, UsageError
from replica.schemas.seqspace import MARKER, NODE, recorded_kind
from replica.schemas.storage import is_remote
from replica.schemas.storepath import StorePath, parquet_file, store_root


@dataclass(frozen=True)
class Chunk:
    """Raw rows of one source, sorted by seq without repeats, with the schema metadata of the
    file they came from (new segments made of them carry it)."""

    rows: pa.Table
    metadata: dict[bytes, bytes]


@dataclass
class ArchiveSource:
    root: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.root)

    def kind(self) -> str | None:
        return recorded_kind(ArchiveLayout(self.root))

    def chunks(self) -> Iterator[Chunk]:
        for segment in ArchiveLayout(self.root).segments():
            try:
                parquet = parquet_file(segment.path)
                metadata = parquet.schema_arrow.metadata or {}
                for index in range(parquet.num_row_groups):
                    rows = parquet.read_row_group(index)
                    yield Chunk(rows.cast(RAW_SCHEMA), metadata)
            except (OSError, pa.ArrowException) as exc:
                raise ArchiveError(
                    f"cannot read the source segment {segment.path}: {exc}; run 'replica "
                    "verify' on the source"
                ) from exc


@dataclass
class NodeSource:
    path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.path)

    def kind(self) -> str:
        return NODE

    def chunks(self) -> Iterator[Chunk]:
        order = OrderCheck()
        for node_file in node_files([self.path]):
            try:
                blocks = read_blocks(node_file)
            except BadLine as bad:
                self.warnings.append(f"{node_file.path}:{bad.number}: {bad.reason}; not used")
                continue
            except OSError as exc:
                self.warnings.append(f"{node_file.path}: cannot read it: {exc}; not used")
                continue
            self.warnings += order_warnings(node_file, blocks, order)
            if blocks.raw:
                metadata = {k: v.encode() for k, v in node_metadata(node_file).items()}
                table = blocks_table(blocks, 0, len(blocks.raw), {})
                yield Chunk(table.replace_schema_metadata(None), metadata)


Source = ArchiveSource | NodeSource


def open_source(given: str | os.PathLike[str], endpoint_url: str | None = None) -> Source:
    """An archive (a directory or ``s3://`` prefix with raw/ or a seq-space marker), or node
    files (a file named by its height, or a directory holding such files). Raises
    ``UsageError`` for anything else."""
    path = given if isinstance(given, StorePath) else Path(given)
    if not isinstance(given, StorePath) and is_remote(os.fspath(given)):
        path = store_root(os.fspath(given), endpoint_url)
    if not path.exists():
        raise UsageError(f"source {path} does not exist")
    if path.is_dir() and ((path / "raw").is_dir() or (path / MARKER).is_file()):
        return ArchiveSource(path)
    if isinstance(path, StorePath):
        raise UsageError(
            f"source {path} is not an archive (it has no raw/ prefix); node files are read "
            "from a local disk"
        )
    if not node_files([path]):
        raise UsageError(
            f"source {path} is neither an archive (it has no raw/ directory) nor a node's "
            "replica_cmds files (named by block height)"
        )
    return NodeSource(path)
