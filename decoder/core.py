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
from replica.decoder.messages import PayloadMessage, contract_v1
from replica.decoder.node import NodeColumns, NotABlock
from replica.decoder.protobuf import KEY_FIELDS, CommandPlan
from replica.schemas.decoded import NODE_ONLY_SCHEMAS, UNDECODED_SCHEMA
from replica.schemas.errors import UsageError

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
    """One table's rows as batches of Arrow columns, each already in (seq, idx) order; sorted
    as a whole only if the batches interleave (a table fed by protobuf and node rows)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._batches: list[pa.RecordBatch] = []
        self._last_key = (-1, -1)
        self._in_order = True

    def extend(self, columns: dict[str, pa.Array], rows: int) -> None:
        """Add ``rows`` rows; a column the table has and ``columns`` lacks is null."""
        arrays = [
            columns[f.name] if f.name in columns else pa.nulls(rows, f.type) for f in self.schema
        ]
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        seq, idx = columns["seq"], columns["idx"]
        first, last = (seq[0].as_py(), idx[0].as_py()), (seq[-1].as_py(), idx[-1].as_py())
        self._in_order = self._in_order and first > self._last_key
        self._last_key = last

    def table(self) -> pa.Table:
        table = pa.Table.from_batches(self._batches, schema=self.schema)
        if not self._in_order:
            table = table.take(pc.sort_indices(table, [("seq", "ascending"), ("idx", "ascending")]))
        return table


def _undecoded(seq: int, ts_ms: int, payload: bytes, reason: str) -> dict[str, Any]:
    return {"seq": seq, "idx": 0, "time_ms": ts_ms, "reason": reason, "size": len(payload)}


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
        """Tables with at least one row, for payloads given with their seq and archive ts_ms.

        The three columns are one row each per command: ``UsageError`` if their lengths differ,
        rather than rows silently paired with another command's seq."""
        if not len(seqs) == len(ts_ms) == len(payloads):
            raise UsageError(
                f"seqs, ts_ms and payloads have {len(seqs)}, {len(ts_ms)} and {len(payloads)} "
                "items; give one of each per command"
            )
        tables: dict[str, _TableColumns] = {}

        def add(name: str, columns: dict[str, pa.Array], rows: int) -> None:
            if name not in tables:
                tables[name] = _TableColumns(self.schemas[name])
            tables[name].extend(columns, rows)

        facts, failed, blocks = self._plan.read(payloads, seqs, ts_ms)
        for fact, buffer in facts:
            rows = fact.rows(buffer)
            add(fact.table, rows.columns, rows.rows)
        undecoded = [_undecoded(seqs[i], ts_ms[i], payloads[i], reason) for i, reason in failed]
        node = NodeColumns()
        for i in blocks:
            try:
                node.add(seqs[i], payloads[i])
            except NotABlock as exc:
                undecoded.append(_undecoded(seqs[i], ts_ms[i], payloads[i], str(exc)))
        for name, names, table_rows in node.tables():
            if table_rows:
                schema = self.schemas[name]
                columns = zip(*table_rows, strict=True)
                arrays = {
                    c: pa.array(v, schema.field(c).type)
                    for c, v in zip(names, columns, strict=True)
                }
                add(name, arrays, len(table_rows))
        undecoded += node.undecoded
        if undecoded:
            undecoded.sort(key=lambda row: (row["seq"], row["idx"]))
            batch = pa.RecordBatch.from_pylist(undecoded, schema=self.schemas["undecoded"])
            add("undecoded", dict(zip(batch.schema.names, batch.columns, strict=True)), len(batch))
        return {name: columns.table() for name, columns in tables.items()}

    def decode_one(self, seq: int, ts_ms: int, payload: bytes) -> dict[str, list[dict[str, Any]]]:
        """One payload's rows by table, as dicts of every column of the table: what ``decode``
        gives for it, without the cost of building Arrow tables for one command."""
        facts, failed, blocks = self._plan.read([payload], [seq], [ts_ms])
        rows: dict[str, list[dict[str, Any]]] = {}
        for fact, buffer in facts:
            rows.setdefault(fact.table, []).extend(fact.dicts(buffer))
        for _, reason in failed:
            rows["undecoded"] = [_undecoded(seq, ts_ms, payload, reason)]
        if blocks:
            node = NodeColumns()
            try:
                node.add(seq, payload)
            except NotABlock as exc:
                node.undecoded.append(_undecoded(seq, ts_ms, payload, str(exc)))
            for name, names, table_rows in node.tables():
                if table_rows:
                    rows[name] = [dict(zip(names, values, strict=True)) for values in table_rows]
            if node.undecoded:
                rows["undecoded"] = node.undecoded
        return {
            name: [{column: row.get(column) for column in self.schemas[name].names} for row in rs]
            for name, rs in rows.items()
        }
