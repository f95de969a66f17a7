"""Payload bytes into typed tables: a pure function of the bytes, no I/O.

Each payload's form is detected on its own: a node JSON block starts with ``{`` (as protobuf
can never do: that byte would open a group on field 15), anything else is parsed as the
protobuf message. What neither form explains becomes an ``undecoded`` row with a reason; no
payload raises and none is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from decoder.messages import PayloadMessage, contract_v1
from decoder.node import NodeColumns, NotABlock
from decoder.protobuf import KEY_FIELDS, CommandPlan
from schemas.decoded import NODE_ONLY_SCHEMAS, UNDECODED_SCHEMA
from schemas.errors import UsageError

# Bump when the same payload would decode to different rows: outputs of older versions are
# decoded again by the next ``replica decode``.
DECODER_VERSION = "1"


class SchemaConflict(UsageError):
    """Two sources of rows disagree about a column of one table."""


def _merge(table: str, fields: list[pa.Field], more: Sequence[pa.Field]) -> None:
    by_name = {f.name: f for f in fields}
    for field in more:
        known = by_name.get(field.name)
        if known is None:
            fields.append(field)
            by_name[field.name] = field
        elif known.type != field.type:
            raise SchemaConflict(
                f"table {table}: column {field.name} is {known.type} in one kind of row and "
                f"{field.type} in another"
            )


def _fact_schemas(plan: CommandPlan) -> dict[str, list[pa.Field]]:
    tables: dict[str, list[pa.Field]] = {}
    for fact in plan.kinds.values():
        _merge(fact.table, tables.setdefault(fact.table, [*KEY_FIELDS]), fact.fields)
    return tables


# Node blocks carry the v1 facts under the v1 column names, whatever message protobuf payloads
# are parsed as.
_V1_FACT_SCHEMAS = _fact_schemas(CommandPlan(contract_v1().cls))


class _TableColumns:
    """One table's rows as they come: Arrow columns for a kind of protobuf fact in one chunk of
    payloads, dicts for the rows of node blocks."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._batches: list[pa.RecordBatch] = []
        self._pending: list[dict[str, Any]] = []
        self._last_key = (-1, -1)
        self._in_order = True

    def _follows(self, first_key: tuple[int, int], last_key: tuple[int, int]) -> None:
        self._in_order = self._in_order and first_key > self._last_key
        self._last_key = last_key

    def _flush(self) -> None:
        if self._pending:
            self._batches.append(pa.RecordBatch.from_pylist(self._pending, schema=self.schema))
            self._pending = []

    def extend(self, columns: dict[str, pa.Array], rows: int) -> None:
        """Add ``rows`` rows, already in (seq, idx) order."""
        if not rows:
            return
        self._flush()
        arrays = [columns.get(f.name) or pa.nulls(rows, f.type) for f in self.schema]
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        seq, idx = columns["seq"], columns["idx"]
        self._follows((seq[0].as_py(), idx[0].as_py()), (seq[-1].as_py(), idx[-1].as_py()))

    def append(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        key = (row["seq"], row["idx"])
        self._follows(key, key)

    def table(self) -> pa.Table:
        self._flush()
        table = pa.Table.from_batches(self._batches, schema=self.schema)
        if not self._in_order:
            table = table.take(pc.sort_indices(table, [("seq", "ascending"), ("idx", "ascending")]))
        return table


class Decoder:
    """Decodes batches of payloads into one Arrow table per kind of fact."""

    def __init__(self, message: PayloadMessage | None = None) -> None:
        self.message = message or contract_v1()
        self.version = f"{DECODER_VERSION}+{self.message.fingerprint}"
        self._plan = CommandPlan(self.message.cls)
        self.schemas = self._table_schemas()

    def _table_schemas(self) -> dict[str, pa.Schema]:
        tables = _fact_schemas(self._plan)
        for table, fields in _V1_FACT_SCHEMAS.items():
            _merge(table, tables.setdefault(table, []), fields)
        for table, schema in {**NODE_ONLY_SCHEMAS, "undecoded": UNDECODED_SCHEMA}.items():
            if table in tables:
                raise SchemaConflict(f"table {table}: the protobuf schema may not define it")
            tables[table] = list(schema)
        return {table: pa.schema(fields) for table, fields in tables.items()}

    def decode(
        self, seqs: Sequence[int], ts_ms: Sequence[int], payloads: Sequence[bytes]
    ) -> dict[str, pa.Table]:
        """Tables with at least one row, for payloads given with their seq and archive ts_ms."""
        tables: dict[str, _TableColumns] = {}

        def table(name: str) -> _TableColumns:
            if name not in tables:
                tables[name] = _TableColumns(self.schemas[name])
            return tables[name]

        def undecoded(i: int, reason: str) -> None:
            row = {"seq": seqs[i], "idx": 0, "time_ms": ts_ms[i], "reason": reason}
            table("undecoded").append(row | {"size": len(payloads[i])})

        facts, failed, blocks = self._plan.read(payloads, seqs, ts_ms)
        for i, reason in failed:
            undecoded(i, reason)
        for fact, buffer in facts:
            rows = fact.rows(buffer)
            table(fact.table).extend(rows.columns, rows.rows)
        node = NodeColumns()
        for i in blocks:
            try:
                node.add(seqs[i], payloads[i])
            except NotABlock as exc:
                undecoded(i, str(exc))
        self._add_node_rows(node, table)
        decoded = {name: columns.table() for name, columns in tables.items()}
        return {name: rows for name, rows in decoded.items() if rows.num_rows}

    def _add_node_rows(self, node: NodeColumns, table) -> None:
        for name, names, rows in node.tables():
            if rows:
                schema = self.schemas[name]
                arrays = {
                    c: pa.array(values, schema.field(c).type)
                    for c, values in zip(names, zip(*rows, strict=True), strict=True)
                }
                table(name).extend(arrays, len(rows))
        if node.undecoded:
            batch = pa.RecordBatch.from_pylist(node.undecoded, schema=self.schemas["undecoded"])
            columns = dict(zip(batch.schema.names, batch.columns, strict=True))
            table("undecoded").extend(columns, batch.num_rows)

    def decode_one(self, seq: int, ts_ms: int, payload: bytes) -> dict[str, list[dict[str, Any]]]:
        """One payload's rows by table, as dicts of every column of the table: what ``decode``
        gives for it, without the cost of building Arrow tables for one command."""
        facts, failed, blocks = self._plan.read([payload], [seq], [ts_ms])
        rows: dict[str, list[dict[str, Any]]] = {}
        for fact, buffer in facts:
            rows.setdefault(fact.table, []).extend(fact.dicts(buffer))
        for _, reason in failed:
            rows["undecoded"] = [
                {"seq": seq, "idx": 0, "time_ms": ts_ms, "reason": reason, "size": len(payload)}
            ]
        if blocks:
            node = NodeColumns()
            try:
                node.add(seq, payload)
            except NotABlock as exc:
                reason = str(exc)
                node.undecoded.append(
                    {"seq": seq, "idx": 0, "time_ms": ts_ms, "reason": reason, "size": len(payload)}
                )
            for name, names, table_rows in node.tables():
                if table_rows:
                    rows[name] = [dict(zip(names, values, strict=True)) for values in table_rows]
            if node.undecoded:
                rows["undecoded"] = node.undecoded
        return {
            name: [{column: row.get(column) for column in self.schemas[name].names} for row in rs]
            for name, rs in rows.items()
        }
