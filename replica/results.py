"""Writing a query's result as a text table (``replica.tables``), CSV, JSON lines or Parquet.

CSV, JSON and Parquet are written by DuckDB's own ``COPY``, which streams: a result larger than
memory still reaches the file. A file is written beside its final name and renamed into place, so
a query that fails leaves no half-written output.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from replica.schemas.errors import ReplicaError, UsageError
from replica.schemas.files import temporary_path
from replica.tables import text_table

FORMATS = ("table", "csv", "json", "parquet")
_COPY_OPTIONS = {"csv": "FORMAT csv, HEADER", "json": "FORMAT json", "parquet": "FORMAT parquet"}
_RESULT_VIEW = "replica_result"
# A table is for reading: cells longer than this are cut, and csv/json/parquet give them whole.
MAX_CELL_CHARS = 60


class QueryFailed(ReplicaError):
    """DuckDB refused or failed the query."""


def write_result(
    connection: duckdb.DuckDBPyConnection, query: str, fmt: str, output: Path | None
) -> None:
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs --output FILE")
    try:
        relation = connection.sql(query.strip().rstrip(";"))
        if relation is None:  # a statement with no result, such as SET
            return
        if fmt == "table":
            _write_text(table_text(relation), output)
        else:
            relation.create_view(_RESULT_VIEW, replace=True)
            _copy(connection, fmt, output)
    except duckdb.Error as exc:
        raise QueryFailed(f"the query failed: {str(exc).strip().splitlines()[0]}") from exc


def _copy(connection: duckdb.DuckDBPyConnection, fmt: str, output: Path | None) -> None:
    def copy_to(target: str) -> None:
        quoted = target.replace("'", "''")
        connection.execute(f"COPY {_RESULT_VIEW} TO '{quoted}' ({_COPY_OPTIONS[fmt]})")

    if output is not None:
        with _replacing(output) as temporary:
            copy_to(str(temporary))
        return
    # Not straight to /dev/stdout: DuckDB truncates it, which wipes a log that stdout appends to.
    with tempfile.TemporaryDirectory(prefix="replica-sql-") as scratch:
        result = Path(scratch) / f"result.{fmt}"
        copy_to(str(result))
        with result.open("rb") as source:
            sys.stdout.flush()
            shutil.copyfileobj(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()


def _write_text(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    with _replacing(output) as temporary:
        temporary.write_text(text, encoding="utf-8")


@contextmanager
def _replacing(output: Path) -> Iterator[Path]:
    """A temporary path beside ``output`` that becomes ``output`` if the block succeeds."""
    temporary = temporary_path(output)
    try:
        yield temporary
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)


def _cell(value: object) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes):
        text = "0x" + value.hex()
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def table_text(relation: duckdb.DuckDBPyRelation) -> str:
    """The result as a table, numbers to the right, ending with its row count."""
    rows = [[_cell(value) for value in row] for row in relation.fetchall()]
    right = [_is_numeric(str(kind)) for kind in relation.types]
    table = text_table(relation.columns, rows, right)
    return table + f"({len(rows)} row{'' if len(rows) == 1 else 's'})\n"


def _is_numeric(duckdb_type: str) -> bool:
    return duckdb_type.split("(")[0] in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
        "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
    }  # fmt: skip
