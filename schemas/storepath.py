"""A path inside an object store, so that the readers of an archive read a bucket unchanged.

Why a path, not a second set of readers: ``replay``, ``serve``, ``gaps``, ``stats`` and ``verify``
find an archive's files with the few ``pathlib`` calls of ``ArchiveLayout`` (``/``, ``name``,
``parent``, ``glob``, ``iterdir``, ``exists``, ``stat``) and open them with ``pyarrow.parquet``.
A ``StorePath`` answers those calls from the store (``pyarrow.fs``, see ``schemas.storage``):
a glob is one listing of the prefix before its first wildcard (``raw/date=2026-11-20/`` for one
day), an object's size comes with its listing, and a Parquet file is opened as a random-access
file, so footers and row groups are read with range requests, never downloaded whole. Local
archives keep their ``pathlib.Path``: nothing changes for them.

It is typed as a ``Path`` for the type checker, so the readers' signatures stay as they are; at
run time it is its own small class. Writing is not among its calls, deleting an object is (a
compaction or a decode on a store uploads through ``schemas.transfer``, then deletes what it
superseded): an operation it lacks (a ``mkdir``, a builtin ``open``) raises
``StoreNotSupported``, one line naming the path and the operation, never a write to the local
disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Generator
from fnmatch import fnmatchcase
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from replica.schemas.errors import UsageError
from replica.schemas.storage import Location, is_remote, locate, store_error

if TYPE_CHECKING:
    _PathType = Path
else:
    _PathType = object

_WILDCARDS = frozenset("*?[")


class StoreNotSupported(UsageError):
    """Something an archive on an object store cannot do yet (writing, following a recorder)."""


class StorePath(_PathType):
    """The object or prefix ``key`` (``bucket/prefix/...``) of ``location``'s store."""

    __slots__ = ("_info", "key", "location")

    def __init__(self, location: Location, key: str, info: pafs.FileInfo | None = None) -> None:
        self.location = location
        self.key = key.rstrip("/")
        self._info = info  # from the listing that found it, so that stat() costs no request

    # ---- what pathlib computes from the name alone --------------------------------------------

    def _pure(self) -> PurePosixPath:
        return PurePosixPath(self.key)

    def __truediv__(self, name: str | os.PathLike[str]) -> StorePath:
        return StorePath(self.location, f"{self.key}/{os.fspath(name)}".rstrip("/"))

    def joinpath(self, *names: str | os.PathLike[str]) -> StorePath:
        path = self
        for name in names:
            path = path / name
        return path

    @property
    def name(self) -> str:
        return self._pure().name

    @property
    def parent(self) -> StorePath:
        return StorePath(self.location, str(self._pure().parent))

    def resolve(self, strict: bool = False) -> StorePath:
        return self

    def absolute(self) -> StorePath:
        return self

    def __str__(self) -> str:
        return f"s3://{self.key}"

    def __repr__(self) -> str:
        return f"StorePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorePath) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: PurePath) -> bool:
        return isinstance(other, StorePath) and self.key < other.key

    def __fspath__(self) -> str:
        raise StoreNotSupported(f"{self}: reading it as a local file is not supported")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise StoreNotSupported(f"{self}: {name} is not supported on an object store yet")

    # ---- what asks the store -----------------------------------------------------------------

    def _file_info(self) -> pafs.FileInfo:
        if self._info is None:
            try:
                self._info = self.location.filesystem.get_file_info(self.key)
            except OSError as exc:
                raise store_error(self.location, exc) from None
        return self._info

    def exists(self) -> bool:
        """Asked of the store each time (a listing's answer may be stale: whether a file is
        still there is what a caller asks this for)."""
        self._info = None
        return bool(self._file_info().type != pafs.FileType.NotFound)

    def is_dir(self) -> bool:
        return bool(self._file_info().type == pafs.FileType.Directory)

    def is_file(self) -> bool:
        return bool(self._file_info().type == pafs.FileType.File)

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        info = self._file_info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{self} does not exist")
        mode = stat.S_IFDIR if info.type == pafs.FileType.Directory else stat.S_IFREG
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        return os.stat_result((mode, 0, 0, 0, 0, 0, info.size or 0, mtime, mtime, mtime))

    def _listing(self, recursive: bool) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.key, allow_not_found=True, recursive=recursive)
        try:
            infos: list[pafs.FileInfo] = self.location.filesystem.get_file_info(selector)
        except OSError as exc:
            raise store_error(self.location, exc) from None
        return infos

    def iterdir(self) -> Generator[StorePath, None, None]:
        for info in self._listing(recursive=False):
            yield StorePath(self.location, info.path, info)

    def glob(self, pattern: str) -> Generator[StorePath, None, None]:
        """What ``Path.glob`` gives (``*``, ``?``, ``[...]`` within a name, ``**`` across
        names), from one listing of the prefix before the first wildcard."""
        parts = pattern.split("/")
        fixed = 0
        while fixed < len(parts) and not _WILDCARDS & set(parts[fixed]):
            fixed += 1
        base = self.joinpath(*parts[:fixed])
        wanted = parts[fixed:]
        if not wanted:
            if base.exists():
                yield base
            return
        infos = base._listing(recursive=len(wanted) > 1 or "**" in wanted)
        start = len(base.key) + 1
        for info in sorted(infos, key=lambda info: info.path):
            if _matches(wanted, info.path[start:].split("/")):
                yield StorePath(self.location, info.path, info)

    def rglob(self, pattern: str) -> Generator[StorePath, None, None]:
        return self.glob(f"**/{pattern}")

    def open(self, mode: str = "rb") -> pa.NativeFile:  # type: ignore[override]
        """The object as a random-access file (reads are range requests)."""
        if mode != "rb":
            raise StoreNotSupported(f"{self}: opening it as {mode!r} is not supported")
        try:
            return self.location.filesystem.open_input_file(self.key)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise store_error(self.location, exc) from None

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object: what a compaction or a decode does to what it superseded."""
        if not missing_ok and not self.exists():
            raise FileNotFoundError(f"{self} does not exist")
        try:
            self.location.filesystem.delete_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as exc:
            raise store_error(self.location, exc) from None

    def read_bytes(self) -> bytes:
        with self.open() as source:
            return bytes(source.read())

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        return self.read_bytes().decode(encoding or "utf-8", errors or "strict")


def _matches(pattern: list[str], names: list[str]) -> bool:
    if not pattern:
        return not names
    if pattern[0] == "**":
        return _matches(pattern[1:], names) or (bool(names) and _matches(pattern, names[1:]))
    return bool(names) and fnmatchcase(names[0], pattern[0]) and _matches(pattern[1:], names[1:])


def store_root(url: str, endpoint_url: str | None = None) -> StorePath:
    """The root of the archive at ``s3://bucket/prefix`` (no request is made yet)."""
    location = locate(url, endpoint_url)
    return StorePath(location, location.root)


# ---- a path handed to a task in another process or on a cluster worker ------------------------


def task_path(path: Path) -> str:
    """``path`` as a task is given it: absolute (a worker has its own working directory), or
    the object's ``s3://`` URL, which holds no secret."""
    return str(path.absolute())


def task_endpoint(path: Path) -> str | None:
    """The endpoint a task opens ``path``'s store at: never a credential, which each worker
    takes from its own AWS chain (environment, profile, instance role)."""
    return path.location.endpoint if isinstance(path, StorePath) else None


def opened(path: str, endpoint: str | None) -> Path:
    """What a task makes of a ``task_path``: the object on the store at ``endpoint``, or the
    local path."""
    return store_root(path, endpoint) if is_remote(path) else Path(path)


# ---- Parquet, wherever the file is ------------------------------------------------------------


def _source(path: Path) -> tuple[str | Path, pafs.FileSystem | None]:
    if isinstance(path, StorePath):
        return path.key, path.location.filesystem
    return path, None


def parquet_file(path: Path, **options: Any) -> pq.ParquetFile:
    """``pq.ParquetFile`` of a local or stored file. On a store the row group's column chunks
    are fetched together (``pre_buffer``): a few range requests rather than one per column."""
    source, filesystem = _source(path)
    if filesystem is not None:
        options.setdefault("pre_buffer", True)
    return pq.ParquetFile(source, filesystem=filesystem, **options)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    source, filesystem = _source(path)
    return pq.read_table(source, columns=columns, filesystem=filesystem)


def read_metadata(path: Path) -> pq.FileMetaData:
    source, filesystem = _source(path)
    return pq.read_metadata(source, filesystem=filesystem)


def read_schema(path: Path) -> pa.Schema:
    source, filesystem = _source(path)
    return pq.read_schema(source, filesystem=filesystem)
