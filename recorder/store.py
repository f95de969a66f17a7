"""What a recorder writing to a store learns from the store when it starts: the kind of seqs the
store's archive holds, and where it ends.

The recorder records into a local staging archive (``--spool-dir``) and uploads each sealed file
(``recorder.upload``), which removes it locally once the store has it. So the staging alone no
longer says where the archive ends: without that, a restart would archive again seqs that the
store holds, or miss the gap of its downtime. Two places say it:

- ``STAGING/.uploaded/``: the uploader keeps there the newest raw segment it uploaded, so that a
  restart needs no store at all (an unreachable store must not stop a recording);
- the store's own newest raw segments, read at every start when the store answers: they matter
  for a fresh staging directory (a new machine, a deleted cache).

The newer of the two is written into ``.uploaded/`` (only its last rows, under the segment's
name), and ``recorder.startup.archived_tail`` resumes from the newest of the staging's segments
and ``.uploaded/``. One store prefix takes one recorder: two recorders on different machines
writing one prefix are not detected.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from replica.schemas.archive import SEQ_DIGITS, ArchiveLayout
from replica.schemas.errors import ArchiveError, UsageError
from replica.schemas.files import temporary_path
from replica.schemas.seqspace import FEED, MARKER, NODE, meaning
from replica.schemas.storage import Location, store_error

log = logging.getLogger(__name__)

UPLOADED_DIR = ".uploaded"
# A clock that stepped back files a segment under an earlier hour, rarely an earlier day: the
# newest segment is looked for in the newest days that hold any, this many of them.
TAIL_DAYS = 2
_SEGMENT = re.compile(rf"^(\d{{{SEQ_DIGITS}}})-(\d{{{SEQ_DIGITS}}})\.parquet$")


def uploaded_dir(layout: ArchiveLayout) -> Path:
    return layout.root / UPLOADED_DIR


def uploaded_tails(layout: ArchiveLayout) -> list[tuple[int, Path]]:
    """The segments kept in ``.uploaded/`` by their last seq, oldest first."""
    found = []
    for path in uploaded_dir(layout).glob("*.parquet"):
        match = _SEGMENT.match(path.name)
        if match:
            found.append((int(match[2]), path))
    return sorted(found)


def learn_store_tail(layout: ArchiveLayout, store: Location, rows: int) -> None:
    """Check the store holds feed seqs, and keep the last ``rows`` of its newest segment in
    ``.uploaded/`` if it is newer than any the staging knows of. An unreachable store is only a
    warning when the staging knows where the archive ends, else an ``ArchiveError``."""
    for tmp in uploaded_dir(layout).glob(".*.tmp"):  # a kill mid-write; the lock is ours
        tmp.unlink(missing_ok=True)
    local = [s.last_seq for s in layout.segments()[-1:]] + [
        last for last, _ in uploaded_tails(layout)[-1:]
    ]
    try:
        _check_kind(store)
        newest = _newest_segment(store)
        if newest is not None and newest[0] > max(local, default=-1):
            _keep_tail(layout, store, newest[1], rows)
    except OSError as exc:
        error = store_error(store, exc)
        if not local:
            raise ArchiveError(
                f"cannot learn where the archive ends: {error}; a recorder needs that before "
                "recording into a store it has not recorded into from this --spool-dir"
            ) from None
        log.warning("%s; resuming after seq %d, as the spool dir knows", error, max(local))


def _check_kind(store: Location) -> None:
    try:
        with store.filesystem.open_input_stream(store.path(MARKER)) as stream:
            kind = stream.read().decode(errors="replace").strip()
    except FileNotFoundError:
        return
    if kind != FEED:
        what = meaning(kind) if kind in (FEED, NODE) else f"seqs of kind {kind[:40]!r}"
        raise UsageError(
            f"{store.url} holds {what} ({MARKER}); replica record writes {meaning(FEED)}, "
            "which would mix two unrelated seq spaces: use another prefix"
        )


def _newest_segment(store: Location) -> tuple[int, str] | None:
    """The last seq and path of the store's newest raw segment, listing only its newest days."""
    fs = store.filesystem
    days = fs.get_file_info(pafs.FileSelector(store.path("raw"), allow_not_found=True))
    dated = sorted((info.path for info in days if info.base_name.startswith("date=")), reverse=True)
    found: list[tuple[int, str]] = []
    searched = 0
    for day in dated:
        selector = pafs.FileSelector(day, recursive=True)
        for info in fs.get_file_info(selector):
            match = _SEGMENT.match(info.base_name)
            if match and info.type == pafs.FileType.File:
                found.append((int(match[2]), info.path))
        searched += bool(found)
        if searched >= TAIL_DAYS:
            break
    return max(found, default=None)


def _keep_tail(layout: ArchiveLayout, store: Location, path: str, rows: int) -> None:
    with store.filesystem.open_input_file(path) as source:
        parquet = pq.ParquetFile(source)
        first, held = parquet.num_row_groups, 0
        while first > 0 and held < rows:
            first -= 1
            held += parquet.metadata.row_group(first).num_rows
        table = parquet.read_row_groups(range(first, parquet.num_row_groups))
    keep_uploaded(layout, table, Path(path).name)
    log.info("the store's archive ends in %s/%s", store.url, path[len(store.root) :].lstrip("/"))


def keep_uploaded(layout: ArchiveLayout, table: pa.Table, name: str) -> None:
    """Write ``table`` as ``.uploaded/NAME`` and drop the older ones there."""
    directory = uploaded_dir(layout)
    directory.mkdir(exist_ok=True)
    final = directory / name
    tmp = temporary_path(final)
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    forget_older_uploads(layout)


def forget_older_uploads(layout: ArchiveLayout) -> None:
    """Keep only the newest segment in ``.uploaded/``."""
    for _, path in uploaded_tails(layout)[:-1]:
        path.unlink(missing_ok=True)
