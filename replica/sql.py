"""DuckDB views over an archive, so that SQL needs no import step.

Each view reads its table's files through a hive-partitioned glob, so a filter on ``date`` (and
``hour`` for ``raw_cmds``) opens only that partition's files. The globs name ``date=*`` and
``hour=*`` rather than ``*``: DuckDB's ``*`` also matches hidden directories, which is where
writers stage files before publishing them. A connection for a query or a session (not a
database file) reads the files listed when it is made instead, where that listing holds
segments a larger one supersedes (the publish rule of a store, see ``covering``).

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

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field

import duckdb
import pyarrow as pa

from replica.decoder.core import Decoder
from replica.schemas.archive import (
    DATE_FILES,
    GAP_SCHEMA,
    HOUR_FILES,
    QUARANTINE_SCHEMA,
    RAW_SCHEMA,
    covering_files,
)
from replica.schemas.decoded import DECODED_DIR, DECODED_VIEWS
from replica.schemas.errors import ArchiveError
from replica.schemas.heals import HEAL_SCHEMA, HEALS_DIR
from replica.schemas.metadata import DECODER_KEY
from replica.sql_storage import ArchiveTree, open_tree

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
    # Decoded files written by different decoder versions may differ in columns.
    decoded: bool = False
    tree: ArchiveTree | None = dataclass_field(default=None, compare=False)
    # The files to read instead of the glob: those a listing found, less each inside a larger
    # one (``covering_files``), when it found any such (a compaction or heal on a store between
    # its upload and its deletes).
    files: tuple[str, ...] | None = None

    def union_by_name(self) -> bool:
        """Whether the view must union its files by name. That holds every file's footer in
        memory while the view binds (half a GB for a year of hourly files), so only a decoded
        table whose files are of several versions gets it; asked only of the views a query
        needs, since finding out reads each file's key-value metadata."""
        if not self.decoded or not self.has_files or self.tree is None:
            return False
        return not one_decoder_version(self.tree, self.glob)

    def statement(self, create: str = "CREATE VIEW") -> str:
        derived = "".join(f", {expr} AS {name}" for name, expr in _readable_times(self.schema))
        if self.has_files:
            types = ", ".join(f"'{p}': {_PARTITION_TYPES[p]}" for p in self.partitions)
            where = _quote(self.glob)
            if self.files is not None:
                where = f"[{', '.join(map(_quote, self.files))}]"
            source = (
                f"SELECT *{derived} FROM read_parquet({where}, "
                f"hive_partitioning = true, hive_types = {{{types}}}"
                f"{', union_by_name = true' if self.union_by_name() else ''})"
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


def table_views(
    root: str | os.PathLike[str] | ArchiveTree, pinned: bool = False
) -> list[TableView]:
    """The views of every table the archive has, raw first, decoded tables by name. ``pinned``
    (for a connection that lives for one query or session, not a database file): a table whose
    listing holds files superseded by a larger one reads the covering files listed now, so that
    each seq is counted once while a compaction or heal on a store is between its upload and its
    deletes; otherwise every view reads its glob, which sees the files present when it runs."""
    tree = root if isinstance(root, ArchiveTree) else open_tree(root)
    views = [
        _view(tree, "raw_cmds", "raw", HOUR_FILES, RAW_SCHEMA, ("date", "hour"), pinned),
        _view(tree, "gaps", "gaps", DATE_FILES, GAP_SCHEMA, ("date",), pinned),
        _view(tree, "quarantine", "quarantine", DATE_FILES, QUARANTINE_SCHEMA, ("date",), pinned),
        _view(tree, "heals", HEALS_DIR, DATE_FILES, HEAL_SCHEMA, ("date",), pinned),
    ]
    for name, table_dir in (("arrivals", ARRIVALS_DIR), ("connections", CONNECTIONS_DIR)):
        found = tree.glob(f"{table_dir}/{DATE_FILES}")
        if found:  # only in an archive recorded from several endpoints
            schema = tree.schema(found[0])
            views.append(_view(tree, name, table_dir, DATE_FILES, schema, ("date",), pinned))
    schemas = dict(Decoder().schemas)  # every table the default contract can give, files or not
    for name in _decoded_tables(tree):
        first = tree.glob(f"{DECODED_DIR}/{name}/{DATE_FILES}")
        if first:
            schemas[name] = tree.schema(first[0])
    for name, schema in sorted(schemas.items()):
        view = _view(tree, name, f"{DECODED_DIR}/{name}", DATE_FILES, schema, ("date",), pinned)
        views.append(replace(view, decoded=True))
    return views


def one_decoder_version(tree: ArchiveTree, glob: str) -> bool:
    """Whether every file of a decoded table (``glob``, as DuckDB reads it) says it was written
    by one and the same decoder version, and so has that version's one schema. Only the files'
    key-value metadata is read, which DuckDB streams: a footer at a time, not all at once."""
    files = len(tree.glob(glob.removeprefix(f"{tree.root}/")))
    try:
        with duckdb.connect() as db:
            tree.register(db)
            found = db.execute(
                "SELECT count(DISTINCT value), count(DISTINCT file_name) "
                "FROM parquet_kv_metadata(?) WHERE key = ?",
                [glob, DECODER_KEY],
            ).fetchone()
    except duckdb.Error:
        return False  # a file that does not read: the query that reads it says which
    return found == (1, files)


def _decoded_tables(tree: ArchiveTree) -> Iterator[str]:
    """Decoded tables, without the ``_segments`` bookkeeping or hidden staging directories."""
    for name in tree.subdirectories(DECODED_DIR):
        if name[0] not in "._":
            yield name


def _view(
    tree: ArchiveTree,
    name: str,
    table_dir: str,
    pattern: str,
    schema: pa.Schema,
    partitions: tuple[str, ...],
    pinned: bool,
) -> TableView:
    found = tree.glob(f"{table_dir}/{pattern}")
    glob = f"{tree.root}/{table_dir}/{pattern}"
    kept = covering_files(found) if pinned else found
    files = tuple(kept) if len(kept) < len(found) else None
    return TableView(name, glob, schema, partitions, bool(found), tree=tree, files=files)


def view_statements(
    root: str | os.PathLike[str] | ArchiveTree,
    create: str = "CREATE VIEW",
    query: str | None = None,
    pinned: bool = False,
) -> list[str]:
    """The SQL that defines the views on ``root``, ``completeness`` last: every view, or with
    ``query`` those it names and the views they read (every view if it names none, as ``SHOW
    TABLES`` does not)."""
    views = table_views(root, pinned)
    wanted = {view.name for view in views} | {"completeness"}
    words = None
    if query is not None:
        words = set(re.findall(r"\w+", query.lower()))
        for name in DECODED_VIEWS.keys() & words:  # and the tables a decoded view reads
            words |= set(DECODED_VIEWS[name][1])
        named = wanted & words
        wanted = named | {"raw_cmds", "heals"} if "completeness" in named else named or wanted
        words = words if named else None
    statements = [view.statement(create) for view in views if view.name in wanted]
    statements += _decoded_views(views, create, words)
    if "completeness" in wanted:
        statements.append(f"{create} completeness AS\n{COMPLETENESS_SQL};")
    return statements


def _decoded_views(views: list[TableView], create: str, words: set[str] | None) -> list[str]:
    """``DECODED_VIEWS`` (all, or those in ``words``) whose tables are defined with the columns
    they read (decoded files of an older decoder may lack them until the next decode)."""
    columns = {view.name: set(view.schema.names) for view in views}
    return [
        f"{create} {name} AS\n{sql};"
        for name, (sql, needs) in DECODED_VIEWS.items()
        if (words is None or name in words)
        and all(set(cols) <= columns.get(table, set()) for table, cols in needs.items())
    ]


def connect(
    root: str | os.PathLike[str],
    database: str | os.PathLike[str] = ":memory:",
    query: str | None = None,
    endpoint_url: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the archive's views defined (``replace``-ing any already there,
    so an existing database file gets the archive's current tables), in the UTC time zone.
    ``root`` is a local path or ``s3://bucket/prefix`` (see ``replica.sql_storage``).

    Defining a view costs DuckDB a glob and a footer read, which a query answered from metadata
    notices; so with ``query``, only the views it needs are defined."""
    tree = open_tree(root, endpoint_url)
    pinned = os.fspath(database) == ":memory:"  # a database file's views must see new files
    statements = view_statements(tree, "CREATE OR REPLACE VIEW", query, pinned)
    connection = duckdb.connect(os.fspath(database))
    try:
        tree.register(connection)
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
