"""Where an archive keeps each table, and the Arrow schema of every file in it.

This is a contract: DuckDB users glob these paths and later stages read these columns, so a change
here is a change of the archive format.

    ARCHIVE/
      raw/date=YYYY-MM-DD/hour=HH/<first_seq>-<last_seq>.parquet  commands, by UTC hour (*)
      gaps/date=YYYY-MM-DD/<unit>.parquet                         missing seq ranges
      quarantine/date=YYYY-MM-DD/<unit>.parquet                   frames that were not archived
      heals/date=YYYY-MM-DD/<unit>.parquet                        seqs filled later (schemas.heals)
      seq-space                                                   feed or node (schemas.seqspace)
      spool/<unit>.wal                                            write-ahead log, unsealed frames
      .lock                                                       held by a recorder, import or heal
      .maintenance.lock                                           taken in turn by maintenance
      .compact/                                                   a compaction's or heal's new days
      .heal/date=YYYY-MM-DD/<unit>.parquet                        a store heal's unpublished records
      .compacted/date=YYYY-MM-DD.json                             a compacted day's file set

(*) of the ts_ms of the segment's first command: no ts_ms in a segment is after its hour, but a
ts_ms that stepped back into an earlier hour stays in the segment that was open.

Seqs in file names are zero-padded so that names sort in seq order. A file appears under its final
name only once complete (see ``schemas.files``); temporary files start with a dot and end in
``.tmp``, so ``*.parquet`` globs never see them.

A segment whose seq range lies inside a larger one's of the same hour is superseded, and readers
leave it out (``covering``): on an object store, which has no rename, a compaction publishes its
merged segment before it deletes the inputs, and a heal uploads the two pieces of a segment it
adds seqs inside (named inside its range) before it deletes that segment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from replica.schemas.errors import ArchiveError, NotAnArchive
from replica.schemas.files import TEMPORARY_GLOB
from replica.schemas.storage import is_remote
from replica.schemas.storepath import StorePath, read_table, store_root

if TYPE_CHECKING:
    import pyarrow.parquet as pq

SEQ_DIGITS = 20
MS_PER_HOUR = 3_600_000

RAW_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("ts_ms", pa.int64(), nullable=False),
        pa.field("ingest_ts_us", pa.int64(), nullable=False),
        pa.field("publish_ts_us", pa.int64(), nullable=False),
        pa.field("recv_ts_us", pa.int64(), nullable=False),
        pa.field("raw", pa.binary(), nullable=False),
    ]
)

GAP_SCHEMA = pa.schema(
    [
        pa.field("from_seq", pa.int64(), nullable=False),
        pa.field("to_seq", pa.int64(), nullable=False),
        pa.field("missing", pa.int64(), nullable=False),
        pa.field("cause", pa.string(), nullable=False),
        pa.field("detected_ts_us", pa.int64(), nullable=False),
        # ts_ms of the last command before the gap: unknown only when the archive had none.
        pa.field("before_ts_ms", pa.int64(), nullable=True),
        pa.field("after_ts_ms", pa.int64(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("recv_ts_us", pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=True),
        pa.field("frame", pa.string(), nullable=False),
        pa.field("frame_bytes", pa.int64(), nullable=False),
    ]
)

# Why these encodings: seqs and timestamps rise by small steps, which delta packing stores in a
# few bits; DELTA_LENGTH_BYTE_ARRAY lays the payloads end to end, so zstd sees one long stream
# much like a plain zstd of the concatenated payloads.
RAW_COLUMN_ENCODING = {
    "seq": "DELTA_BINARY_PACKED",
    "ts_ms": "DELTA_BINARY_PACKED",
    "ingest_ts_us": "DELTA_BINARY_PACKED",
    "publish_ts_us": "DELTA_BINARY_PACKED",
    "recv_ts_us": "DELTA_BINARY_PACKED",
    "raw": "DELTA_LENGTH_BYTE_ARRAY",
}
ZSTD_LEVEL = 6
RAW_ROW_GROUP_ROWS = 131_072
# How every raw segment is written (``pq.write_table`` options).
RAW_WRITE_OPTIONS = {
    "compression": "zstd",
    "compression_level": ZSTD_LEVEL,
    "use_dictionary": False,
    "column_encoding": RAW_COLUMN_ENCODING,
    "row_group_size": RAW_ROW_GROUP_ROWS,
}
# Payload bytes (before compression) a raw row group holds at most, beside its row cap.
RAW_ROW_GROUP_BYTES = 64 << 20


def raw_row_group_rows(rows: int, payload_bytes: int) -> int:
    """Rows per row group of a raw segment whose ``rows`` commands hold ``payload_bytes``: at
    most ``RAW_ROW_GROUP_ROWS`` and about ``RAW_ROW_GROUP_BYTES`` of payloads. Readers hold a
    row group (or a batch this size) at a time, so the cap in bytes is what bounds their memory
    when a row is a 0.5 MB node block rather than a few hundred bytes of feed command."""
    if rows <= 0 or payload_bytes <= 0:
        return RAW_ROW_GROUP_ROWS
    return max(1, min(RAW_ROW_GROUP_ROWS, RAW_ROW_GROUP_BYTES * rows // payload_bytes))


def raw_write_options(table: pa.Table) -> dict[str, Any]:
    """``RAW_WRITE_OPTIONS`` with row groups sized for ``table``'s payloads."""
    rows = raw_row_group_rows(table.num_rows, table.column("raw").nbytes)
    return {**RAW_WRITE_OPTIONS, "row_group_size": rows}


def raw_batch_rows(metadata: pq.FileMetaData) -> int:
    """Rows per batch for reading a raw segment's payloads within that same bound, from its
    footer alone (segments written before row groups were sized in bytes hold more)."""
    rows = payload_bytes = 0
    column = metadata.schema.names.index("raw") if "raw" in metadata.schema.names else None
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        rows += group.num_rows
        if column is not None:
            payload_bytes += group.column(column).total_uncompressed_size
    return raw_row_group_rows(rows, payload_bytes)


# What makes a directory an archive: any one of these (``seq-space`` is the marker saying what
# its seqs count). A directory with none is refused by every reader, never taken for empty.
ARCHIVE_ENTRIES = ("raw/", "spool/", "gaps/", "quarantine/", "seq-space")

_SEGMENT_NAME = re.compile(rf"^(\d{{{SEQ_DIGITS}}})-(\d{{{SEQ_DIGITS}}})\.parquet$")


def segment_name(first_seq: int, last_seq: int) -> str:
    """The file name of the raw segment holding seqs first..last (read back by ``segments``)."""
    return f"{first_seq:0{SEQ_DIGITS}d}-{last_seq:0{SEQ_DIGITS}d}.parquet"


def hour_of(ts_ms: int) -> int:
    """The UTC hour a timestamp falls in, counted from the epoch: the unit of raw partitioning."""
    return ts_ms // MS_PER_HOUR


# Partition directories are named ``date=YYYY-MM-DD`` and ``hour=HH`` (UTC). The functions
# below write those names and read them back; a name they would not write is no partition.
_EPOCH = date(1970, 1, 1)
_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_HOUR_DIR = re.compile(r"hour=([01]\d|2[0-3])")
# Every file of a table partitioned by hour (raw/) and by date (gaps/, quarantine/, decoded/).
# Not ``*``: DuckDB's ``*`` also enters hidden directories.
HOUR_FILES = "date=*/hour=*/*.parquet"
DATE_FILES = "date=*/*.parquet"


def day_of(ts_ms: int) -> date:
    """The UTC day a timestamp falls in: the unit of date partitioning and of compaction."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).date()


def day_partition(day: date) -> str:
    return f"date={day.isoformat()}"


def date_partition(ts_ms: int) -> str:
    return day_partition(day_of(ts_ms))


def hour_partition(hour: int) -> tuple[str, str]:
    moment = datetime.fromtimestamp(hour * 3600, UTC)
    return day_partition(moment.date()), f"hour={moment.hour:02d}"


def partition_day(name: str) -> date | None:
    """The day a ``date=YYYY-MM-DD`` directory stands for; None for any other name."""
    match = _DATE_DIR.fullmatch(name)
    try:
        return date.fromisoformat(match[1]) if match else None
    except ValueError:  # such as month 13
        return None


def partition_hour(date_dir: str, hour_dir: str) -> int | None:
    """The hour (since the epoch) that a date and an hour directory stand for, or None."""
    day, match = partition_day(date_dir), _HOUR_DIR.fullmatch(hour_dir)
    if day is None or match is None:
        return None
    return (day - _EPOCH).days * 24 + int(match[1])


@dataclass(frozen=True)
class Segment:
    """One raw Parquet file, described by its path alone."""

    path: Path
    first_seq: int
    last_seq: int

    @property
    def partition(self) -> tuple[str, str]:
        """The names of the date and hour directories it is filed under."""
        return self.path.parent.parent.name, self.path.parent.name

    @property
    def day(self) -> date | None:
        """The UTC day of its partition; None if its date directory is not named like one."""
        return partition_day(self.partition[0])

    @property
    def hour(self) -> int | None:
        """The UTC hour (since the epoch) of its partition; None if not named like one."""
        return partition_hour(*self.partition)


@dataclass(frozen=True)
class ArchiveLayout:
    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike[str], endpoint_url: str | None = None) -> ArchiveLayout:
        """The layout of the archive at ``root``, which must exist: reading a missing archive,
        or a directory that is not one (a typo, an empty directory), is an error, where writing
        one creates it. An archive is a directory holding any of ``ARCHIVE_ENTRIES``, which
        ``record`` and ``import-node`` create before anything else; it may have no commands yet.
        ``root`` may be ``s3://bucket/prefix`` (read only, see ``schemas.storepath``), whose
        store is at ``endpoint_url`` if given.
        """
        if not isinstance(root, StorePath):
            text = os.fspath(root)
            root = store_root(text, endpoint_url) if is_remote(text) else Path(root)
        if not root.is_dir():
            raise NotAnArchive(f"archive {root} does not exist or is not a directory")
        if not any((root / entry).exists() for entry in ARCHIVE_ENTRIES):
            raise NotAnArchive(
                f"{root} is not an archive: it has none of {', '.join(ARCHIVE_ENTRIES)} "
                "(only 'replica record' and 'replica import-node' create one)"
            )
        return cls(root)

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def gaps_dir(self) -> Path:
        return self.root / "gaps"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    @property
    def maintenance_lock_path(self) -> Path:
        return self.root / ".maintenance.lock"

    @property
    def compact_dir(self) -> Path:
        """Where a compaction builds a day's new directories before swapping them in: outside
        every globbed tree, since DuckDB's globs enter dot-directories."""
        return self.root / ".compact"

    def compaction_journals(self) -> list[Path]:
        """Journals of compactions that began swapping directories and have not finished."""
        return sorted(self.compact_dir.glob("*.json"))

    def segment_path(self, first_seq: int, last_seq: int, hour: int) -> Path:
        date, hh = hour_partition(hour)
        return self.raw_dir / date / hh / segment_name(first_seq, last_seq)

    def unit_path(self, table_dir: Path, ts_ms: int, unit_id: str) -> Path:
        """A gap or quarantine file: named by the unit that wrote it, dated by its rows."""
        return table_dir / date_partition(ts_ms) / f"{unit_id}.parquet"

    def segments(self, day: date | None = None) -> list[Segment]:
        """Every raw segment (or ``day``'s alone) that readers read, in seq order; files whose
        names do not parse are not segments. One day's listing costs the same however old the
        archive is.

        A segment wholly inside a larger one is left out (see ``covering``): an object store
        has no rename, so a compaction there publishes its merged segment first and deletes
        the inputs after, and a reader between the two must see each seq once."""
        return self.listing(day)[0]

    def listing(self, day: date | None = None) -> tuple[list[Segment], list[Segment]]:
        """From one listing: the segments readers read (``segments``), and those left out,
        each inside a larger one: inputs of a compaction on a store that published its merged
        segment and has not deleted them yet (its rerun does). Both in seq order."""
        named = self._named_segments(day)
        kept = covering(named)
        listed = set(kept)
        return kept, [segment for segment in named if segment not in listed]

    def _named_segments(self, day: date | None) -> list[Segment]:
        found = []
        base = self.raw_dir if day is None else self.raw_dir / day_partition(day)
        for path in base.glob(HOUR_FILES if day is None else HOUR_FILES.split("/", 1)[1]):
            match = _SEGMENT_NAME.match(path.name)
            if match:
                found.append(Segment(path, int(match[1]), int(match[2])))
        found.sort(key=lambda s: (s.first_seq, s.last_seq))
        return found

    def stray_raw_files(self) -> list[Path]:
        """Parquet files under raw/ that are not named like segments (for ``verify``)."""
        return sorted(
            path
            for path in self.raw_dir.glob("**/*.parquet")
            if not _SEGMENT_NAME.match(path.name) or path.parent.parent.parent != self.raw_dir
        )

    def table_files(self, table_dir: Path) -> list[Path]:
        return sorted(table_dir.glob(DATE_FILES))

    def gap_rows(self, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """Every gap record as a dict (of ``columns``, or all), in file order: gap files are
        small and read whole."""
        rows = []
        for path in self.table_files(self.gaps_dir):
            try:
                rows += read_table(path, columns=columns).to_pylist()
            except Exception as exc:
                raise ArchiveError(f"cannot read gap file {path}: {exc}") from exc
        return rows

    def temporary_files(self) -> list[Path]:
        return sorted(
            path
            for table_dir in (self.raw_dir, self.gaps_dir, self.quarantine_dir)
            for path in table_dir.glob(TEMPORARY_GLOB)
        )


def covering_files(paths: list[str]) -> list[str]:
    """``covering`` over file paths or URLs given as text, as a SQL view lists them: those
    named as segments less each inside a larger one in its own directory, and every other file
    as it is. In the given order."""
    named = {}
    for text in paths:
        match = _SEGMENT_NAME.match(text.rpartition("/")[2])
        if match:
            named[text] = Segment(Path(text), int(match[1]), int(match[2]))
    kept = {segment.path for segment in covering(list(named.values()))}
    return [text for text in paths if text not in named or named[text].path in kept]


def covering(segments: list[Segment]) -> list[Segment]:
    """``segments`` less each one whose seq range lies wholly inside a larger range of another
    in its own hour directory: the publish rule of archives without rename (a compaction merges
    within an hour). Segments that overlap otherwise, share one range, or lie in different
    hours are all kept, for ``verify`` to name. In seq order."""
    by_hour: dict[Path, list[Segment]] = {}
    for segment in segments:
        by_hour.setdefault(segment.path.parent, []).append(segment)
    kept: list[Segment] = []
    for hour in by_hour.values():
        reach = (-1, -1)  # the first and last seq of the kept segment that reaches furthest
        for segment in sorted(hour, key=lambda s: (s.first_seq, -s.last_seq)):
            first, last = reach
            if segment.last_seq < last or (segment.last_seq == last and segment.first_seq > first):
                continue  # inside the segment that reaches furthest, which starts no later
            kept.append(segment)
            if segment.last_seq > last:
                reach = (segment.first_seq, segment.last_seq)
    kept.sort(key=lambda s: (s.first_seq, s.last_seq))
    return kept
