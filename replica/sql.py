"""DuckDB views over an archive, so that SQL needs no import step.

Each view reads its table's files through a hive-partitioned glob, so a filter on ``date`` (and
``hour`` for ``raw_cmds``) opens only that partition's files. The globs name ``date=*`` and
``hour=*`` rather than ``*``: DuckDB's ``*`` also matches hidden directories, which is where
writers stage files before publishing them.

Every integer timestamp column ``<stem>_ms``, ``_us`` or ``_ns`` keeps its integers and gains a
readable ``<stem>_utc`` TIMESTAMP (UTC, no zone) at the column's own precision; where a table
has one stem at two precisions (``blocks.time_ms`` and ``time_ns``), the finer one gives it.

The paths in the views are absolute, so a database file that ``connect`` defined them in (as
``replica duckdb`` does) works from any directory. A table with no files yet has an empty view of
the right columns, so that a nightly ``SELECT count(*) FROM fills`` gives 0 rather than a catalog
error before the first decode or on an archive that never had fills: DuckDB cannot bind a glob
that matches nothing.

``arrivals`` (one row per delivery per endpoint: ``seq``, ``endpoint``, ``recv_ts_us``), which
only a recorder of several endpoints writes, is a view only where it has files, so that its
absence says one endpoint was recorded; so is ``connections`` (one row per ended connection:
``endpoint``, ``connected_ts_us``, ``closed_ts_us``, ``why``, ``delivered``, ``won``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from replica.decoder.core import Decoder
from replica.schemas.archive import (
    DATE_FILES,
    GAP_SCHEMA,
    HOUR_FILES,
    QUARANTINE_SCHEMA,
    RAW_SCHEMA,
    ArchiveLayout,
)
from replica.schemas.decoded import DECODED_DIR
from replica.schemas.errors import ArchiveError
from replica.schemas.heals import HEAL_SCHEMA, heals_dir

# Finest first.
_TIMESTAMP_OF_SUFFIX = {
    "_ns": "make_timestamp_ns",
    "_us": "make_timestamp",
    "_ms": "epoch_ms",
}
_PARTITION_TYPES = {"date": "DATE", "hour": "INTEGER"}
ARRIVALS_DIR = "arrivals"
CONNECTIONS_DIR = "connections"

# Per UTC day: the seqs from the previous day's last + 1 (or the day's first) to the day's last,
# how many were recorded, how many healed (added later by ``replica heal``, present like the
# recorded ones), how many are missing, and the percent present rounded down, so that only a
# complete day shows 100. A gap across midnight counts against the day it ends in. A day whose
# seqs lie below the day before (seqs of another kind mixed in, or clocks gone back) spans only
# its own seqs, and duplicated seqs never count past the span: missing is never negative and
# percent_complete never above 100.
COMPLETENESS_SQL = """\
WITH days AS (
    SELECT date, min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS held
    FROM raw_cmds GROUP BY date
), healed_days AS (
    SELECT date, sum(healed) AS seqs FROM heals GROUP BY date
), spans AS (
    SELECT days.*, least(held, coalesce(healed_days.seqs, 0)) AS healed,
        least(first_seq, coalesce(lag(last_seq) OVER (ORDER BY date) + 1, first_seq))
            AS from_seq
    FROM days LEFT JOIN healed_days USING (date)
)
SELECT date, from_seq, last_seq AS to_seq, held - healed AS recorded, healed,
    greatest(last_seq - from_seq + 1 - held, 0) AS missing,
    floor(1000000.0 * least(held, last_seq - from_seq + 1) / (last_seq - from_seq + 1))
        / 10000 AS percent_complete
FROM spans
ORDER BY date"""


@dataclass(frozen=True)
class TableView:
    """One archive table as a view: where its files are and which columns they hold."""

    name: str
    glob: str
    schema: pa.Schema
    partitions: tuple[str, ...]
    has_files: bool
    # Decoded files written by different schema versions may differ in columns. Unioning by
    # name reads every file's footer when the view is defined, so fixed schemas go without.
    union_by_name: bool = False

    def statement(self, create: str = "CREATE VIEW") -> str:
        derived = "".join(f", {expr} AS {name}" for name, expr in _readable_times(self.schema))
        if self.has_files:
            types = ", ".join(f"'{p}': {_PARTITION_TYPES[p]}" for p in self.partitions)
            source = (
                f"SELECT *{derived} FROM read_parquet({_quote(self.glob)}, "
                f"hive_partitioning = true, hive_types = {{{types}}}"
                f"{', union_by_name = true' if self.union_by_name else ''})"
            )
        else:
            columns = [
                f"CAST(NULL AS {kind}) AS {name}" for name, kind in _duckdb_types(self.schema)
            ]
            columns += [f"CAST(NULL AS {_PARTITION_TYPES[p]}) AS {p}" for p in self.partitions]
            source = f"SELECT *{derived} FROM (SELECT {', '.join(columns)}) WHERE false"
        return f"{create} {self.name} AS {source};"


def _duckdb_types(schema: pa.Schema) -> list[tuple[str, str]]:
    """Each column's DuckDB type, as DuckDB itself maps the Arrow type."""
    relation = duckdb.from_arrow(schema.empty_table())
    return [(name, str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _readable_times(schema: pa.Schema) -> list[tuple[str, str]]:
    """(name, expression) of each ``<stem>_utc`` column, from the finest precision per stem."""
    finest: dict[str, tuple[int, str, str]] = {}  # stem -> (rank, column, function)
    for field in schema:
        for rank, (suffix, function) in enumerate(_TIMESTAMP_OF_SUFFIX.items()):
            stem = field.name.removesuffix(suffix)
            is_time = stem != field.name and pa.types.is_integer(field.type)
            if is_time and (stem not in finest or rank < finest[stem][0]):
                finest[stem] = (rank, field.name, function)
    return [
        (f"{stem}_utc", f"{function}(CAST({column} AS BIGINT))")
        for stem, (_, column, function) in finest.items()
    ]


def table_views(root: Path) -> list[TableView]:
    """The views of every table the archive has, raw first, decoded tables by name."""
    layout = ArchiveLayout.open(root.resolve())
    views = [
        _view("raw_cmds", layout.raw_dir, HOUR_FILES, RAW_SCHEMA, ("date", "hour")),
        _view("gaps", layout.gaps_dir, DATE_FILES, GAP_SCHEMA, ("date",)),
        _view("quarantine", layout.quarantine_dir, DATE_FILES, QUARANTINE_SCHEMA, ("date",)),
        _view("heals", heals_dir(layout), DATE_FILES, HEAL_SCHEMA, ("date",)),
    ]
    arrivals = next((layout.root / ARRIVALS_DIR).glob(DATE_FILES), None)
    if arrivals is not None:
        table_dir = layout.root / ARRIVALS_DIR
        views.append(_view("arrivals", table_dir, DATE_FILES, _schema(arrivals), ("date",)))
    connections = next((layout.root / CONNECTIONS_DIR).glob(DATE_FILES), None)
    if connections is not None:
        table_dir = layout.root / CONNECTIONS_DIR
        schema = _schema(connections)
        views.append(_view("connections", table_dir, DATE_FILES, schema, ("date",)))
    decoded = layout.root / DECODED_DIR
    schemas = dict(Decoder().schemas)  # every table the default contract can give, files or not
    for table_dir in _decoded_table_dirs(decoded):
        first = next(table_dir.glob(DATE_FILES), None)
        if first is not None:
            schemas[table_dir.name] = _schema(first)
    for name, schema in sorted(schemas.items()):
        view = _view(name, decoded / name, DATE_FILES, schema, ("date",))
        views.append(replace(view, union_by_name=view.has_files))
    return views


def _decoded_table_dirs(decoded: Path) -> Iterator[Path]:
    """Decoded tables, without the ``_segments`` bookkeeping or hidden staging directories."""
    if decoded.is_dir():
        for path in sorted(decoded.iterdir()):
            if path.is_dir() and path.name[0] not in "._":
                yield path


def _schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except Exception as exc:
        raise ArchiveError(f"cannot read the schema of {path}: {exc}") from exc


def _view(
    name: str, table_dir: Path, pattern: str, schema: pa.Schema, partitions: tuple[str, ...]
) -> TableView:
    has_files = next(table_dir.glob(pattern), None) is not None
    return TableView(name, f"{table_dir}/{pattern}", schema, partitions, has_files)


def view_statements(root: Path, create: str = "CREATE VIEW", query: str | None = None) -> list[str]:
    """The SQL that defines the views on ``root``, ``completeness`` last: every view, or with
    ``query`` those it names and the views they read (every view if it names none, as ``SHOW
    TABLES`` does not)."""
    views = table_views(root)
    wanted = {view.name for view in views} | {"completeness"}
    if query is not None:
        named = wanted & set(re.findall(r"\w+", query.lower()))
        wanted = named | {"raw_cmds", "heals"} if "completeness" in named else named or wanted
    statements = [view.statement(create) for view in views if view.name in wanted]
    if "completeness" in wanted:
        statements.append(f"{create} completeness AS\n{COMPLETENESS_SQL};")
    return statements


def connect(
    root: Path, database: str = ":memory:", query: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the archive's views defined (``replace``-ing any already there,
    so an existing database file gets the archive's current tables), in the UTC time zone.

    Defining a view costs DuckDB a glob and a footer read, which a query answered from metadata
    notices; so with ``query``, only the views it needs are defined."""
    statements = view_statements(root, "CREATE OR REPLACE VIEW", query)
    connection = duckdb.connect(database)
    try:
        # Every timestamp in an archive is UTC, and so is "yesterday" in a completeness check.
        connection.execute("SET TimeZone = 'UTC'")
        for statement in statements:
            connection.execute(statement)
    except duckdb.Error as exc:
        connection.close()
        raise ArchiveError(f"cannot define views on {root}: {_first_line(exc)}") from exc
    return connection


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def view_names(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """The views in ``connection``: those ``connect`` defined, and any a database file had."""
    return [
        name
        for (name,) in connection.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
        ).fetchall()
    ]
