"""Where ``replica.sql`` finds an archive's files: a local directory, or an object store.

The views are the same either way; what differs is how the view builder looks for files (a
glob, a directory listing, a Parquet footer) and how DuckDB reads them. On an object store
DuckDB is handed pyarrow's S3 client (``schemas.storage``) through fsspec's wrapper, registered
for ``s3://``: the same credential chain and endpoint as ``replica sync``, and no DuckDB
extension to download (``httpfs`` is fetched from the network when first used, which a machine
without internet access cannot do). Hive partitions prune as on a local archive: DuckDB expands
the glob, then opens only the files whose ``date=``/``hour=`` directories match the filter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from replica.schemas.archive import ARCHIVE_ENTRIES, ArchiveLayout
from replica.schemas.errors import ArchiveError, NotAnArchive
from replica.schemas.storage import Location, is_remote, locate, store_error
from replica.schemas.storepath import StorePath

if TYPE_CHECKING:
    import duckdb
    from fsspec import AbstractFileSystem


class ArchiveTree:
    """A local archive: paths are absolute paths, as DuckDB reads them."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def glob(self, pattern: str) -> list[str]:
        """The files matching ``pattern`` (relative to the root), sorted."""
        return sorted(str(path) for path in Path(self.root).glob(pattern))

    def subdirectories(self, relative: str) -> list[str]:
        directory = Path(self.root, relative)
        if not directory.is_dir():
            return []
        return sorted(path.name for path in directory.iterdir() if path.is_dir())

    def schema(self, path: str) -> pa.Schema:
        return _read_schema(path, path, None)

    def register(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Nothing to do: DuckDB reads local files itself."""


class StoreTree(ArchiveTree):
    """An archive under ``s3://bucket/prefix``: paths are ``s3://`` URLs."""

    def __init__(self, location: Location) -> None:
        self.root = location.url
        self._location = location
        self._fs = _fsspec(location.filesystem)

    def glob(self, pattern: str) -> list[str]:
        try:
            found = self._fs.glob(self._location.path(pattern))
        except OSError as exc:
            raise store_error(self._location, exc) from None
        return sorted(f"s3://{path}" for path in found)

    def subdirectories(self, relative: str) -> list[str]:
        selector = pafs.FileSelector(self._location.path(relative), allow_not_found=True)
        try:
            infos = self._location.filesystem.get_file_info(selector)
        except OSError as exc:
            raise store_error(self._location, exc) from None
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)

    def schema(self, path: str) -> pa.Schema:
        return _read_schema(path.removeprefix("s3://"), path, self._location.filesystem)

    def register(self, connection: duckdb.DuckDBPyConnection) -> None:
        connection.register_filesystem(self._fs)


def open_tree(archive: str | os.PathLike[str], endpoint_url: str | None = None) -> ArchiveTree:
    """The archive at a local path or ``s3://`` URL; ``NotAnArchive`` if it holds none of the
    entries every archive has."""
    if isinstance(archive, StorePath):  # an archive opened already (``ArchiveLayout.open``)
        return StoreTree(archive.location)
    if not is_remote(archive):
        return ArchiveTree(ArchiveLayout.open(Path(archive).resolve()).root)
    location = locate(archive, endpoint_url)
    try:
        infos = location.filesystem.get_file_info([location.path(e) for e in ARCHIVE_ENTRIES])
    except OSError as exc:
        raise store_error(location, exc) from None
    if all(info.type == pafs.FileType.NotFound for info in infos):
        raise NotAnArchive(
            f"{location.url} is not an archive: it has none of {', '.join(ARCHIVE_ENTRIES)} "
            "(replica sync copies one there)"
        )
    return StoreTree(location)


def _fsspec(filesystem: pafs.FileSystem) -> AbstractFileSystem:
    from fsspec.implementations.arrow import ArrowFSWrapper

    class S3Wrapper(ArrowFSWrapper):  # type: ignore[misc]
        protocol = "s3"  # the paths DuckDB hands it

    wrapper: AbstractFileSystem = S3Wrapper(filesystem)
    return wrapper


def _read_schema(path: str, name: str, filesystem: pafs.FileSystem | None) -> pa.Schema:
    try:
        return pq.read_schema(path, filesystem=filesystem)
    except Exception as exc:
        raise ArchiveError(f"cannot read the schema of {name}: {exc}") from exc
