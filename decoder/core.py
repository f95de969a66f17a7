"""Payload bytes into typed tables: a pure function of the bytes, no I/O.

Each payload's form is detected on its own: a node JSON block starts with ``{`` (as protobuf
can never do: that byte would open a group on field 15), anything else is parsed as the
protobuf message. What neither form explains becomes an ``undecoded`` row with a reason; no
payload raises and none is dropped. That includes a value no column can hold (an integer of
400 digits, text that is not UTF-8): rows become columns only through ``columns.arrays``, and
the rows it names are set aside as ``undecoded`` rows.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from replica.decoder.columns import Misfits, SurelyFit, row_arrays
from replica.decoder.messages import PayloadMessage, contract_v1
from replica.decoder.node import NodeColumns
from replica.decoder.node_frame import NotABlock
from replica.decoder.protobuf import KEY_FIELDS, CommandPlan, FactBuffer, FactPlan, FactRows
from replica.schemas.decoded import NODE_FACT_FIELDS, NODE_ONLY_SCHEMAS, UNDECODED_SCHEMA
from replica.schemas.errors import UsageError

# Bump when the same payload would decode to different rows: outputs of older versions are
# decoded again by the next ``replica decode``.
DECODER_VERSION = "3"
# Node blocks are turned into Arrow columns this many payload bytes at a time: a busy mainnet
# block is half a megabyte of JSON and a thousand rows, so the Python rows of a whole row group
# of them would not fit in memory; the Arrow columns of a batch do.
NODE_CHUNK_BYTES = 16 << 20


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


def _fitting_rows(
    fact: FactPlan, buffer: FactBuffer
) -> tuple[FactRows | None, FactBuffer, dict[int, str]]:
    """A kind's rows as columns, and the buffer they came from, without the commands that hold
    a value their column cannot hold; those commands' seqs, with why."""
    spoiled: dict[int, str] = {}
    while buffer.columns[0]:
        try:
            return fact.rows(buffer), buffer, spoiled
        except Misfits as misfits:
            spoiled |= {buffer.columns[0][row]: why for row, why in misfits.rows.items()}
            buffer = fact.without(buffer, set(misfits.rows))
    return None, buffer, spoiled


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a batch is decoded. A busy block makes tens
    of thousands of objects that live until its rows are converted (structs, row tuples), and
    each collection walks all of them: with the collector on, ``replica decode`` took 5 to 10%
    longer on mainnet-shaped blocks (19.5 to 21.5 against 18.4 to 19.4 ms a block). Decoding
    makes no reference cycles; whatever it frees, reference counting frees at once, and the
    collector runs again after the batch."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Decoder:
    """Decodes batches of payloads into one Arrow table per kind of fact."""

    def __init__(self, message: PayloadMessage | None = None) -> None:
        self.message = message or contract_v1()
        self.version = f"{DECODER_VERSION}+{self.message.fingerprint}"
        self._plan = CommandPlan(self.message.cls)
        self.schemas = self._table_schemas()
        self._node_fields: dict[str, list[pa.Field]] = {}
        self._node_surely_fit: dict[str, SurelyFit] = {}

    def _table_schemas(self) -> dict[str, pa.Schema]:
        tables = _fact_schemas(self._plan)
        for table, fields in _V1_FACT_SCHEMAS.items():
            _merge(table, tables.setdefault(table, []), fields)
        for table, fields in NODE_FACT_FIELDS.items():
            _merge(table, tables[table], fields)
        for table, schema in {**NODE_ONLY_SCHEMAS, "undecoded": UNDECODED_SCHEMA}.items():
            if table in tables:
                raise SchemaConflict(f"table {table}: the protobuf schema may not define it")
            tables[table] = list(schema)
        return {table: pa.schema(fields) for table, fields in tables.items()}

    def _fields(self, table: str, names: Sequence[str]) -> list[pa.Field]:
        """The fields of a node table's columns (``names``: the same for a table each time)."""
        if table not in self._node_fields:
            self._node_fields[table] = [self.schemas[table].field(name) for name in names]
            self._node_surely_fit[table] = SurelyFit(self._node_fields[table])
        return self._node_fields[table]

    def _surely_fit(self, table: str, names: Sequence[str], rows: list[tuple[Any, ...]]) -> bool:
        self._fields(table, names)
        return self._node_surely_fit[table](zip(*rows, strict=True))

    def _node_columns(self, node: NodeColumns) -> list[tuple[str, dict[str, pa.Array], int]]:
        """Each node table that has rows, as columns; rows holding a value their column cannot
        hold are set aside (``NodeColumns.set_aside``) until every value fits."""
        while True:
            tables = []
            for name, names, rows in node.tables():
                if not rows:
                    continue
                fields = self._fields(name, names)
                try:
                    columns = row_arrays(rows, fields)
                except Misfits as misfits:
                    node.set_aside(name, misfits.rows, misfits.columns)
                    break
                tables.append((name, dict(zip(names, columns, strict=True)), len(rows)))
            else:
                return tables

    def decode(
        self, seqs: Sequence[int], ts_ms: Sequence[int], payloads: Sequence[bytes]
    ) -> dict[str, pa.Table]:
        """Tables with at least one row, for payloads given with their seq and archive ts_ms
        (the seqs of a batch are distinct, as in an archive).

        The three columns are one row each per command: ``UsageError`` if their lengths differ,
        rather than rows silently paired with another command's seq."""
        if not len(seqs) == len(ts_ms) == len(payloads):
            raise UsageError(
                f"seqs, ts_ms and payloads have {len(seqs)}, {len(ts_ms)} and {len(payloads)} "
                "items; give one of each per command"
            )
        with _collector_paused():
            return self._decode(seqs, ts_ms, payloads)

    def _decode(
        self, seqs: Sequence[int], ts_ms: Sequence[int], payloads: Sequence[bytes]
    ) -> dict[str, pa.Table]:
        tables: dict[str, _TableColumns] = {}

        def add(name: str, columns: dict[str, pa.Array], rows: int) -> None:
            if name not in tables:
                tables[name] = _TableColumns(self.schemas[name])
            tables[name].extend(columns, rows)

        facts, failed, blocks = self._plan.read(payloads, seqs, ts_ms)
        undecoded = [_undecoded(seqs[i], ts_ms[i], payloads[i], reason) for i, reason in failed]
        spoiled: dict[int, str] = {}
        for fact, buffer in facts:
            fitting, _, misfits = _fitting_rows(fact, buffer)
            spoiled |= {seq: f"{fact.table}.{why}" for seq, why in misfits.items()}
            if fitting is not None:
                add(fact.table, fitting.columns, fitting.rows)
        if spoiled:
            position = {seq: i for i, seq in enumerate(seqs)}
            for seq, why in spoiled.items():
                i = position[seq]
                undecoded.append(_undecoded(seq, ts_ms[i], payloads[i], f"protobuf: {why}"))
        node, size = NodeColumns(), 0
        for n, i in enumerate(blocks, 1):
            try:
                node.add(seqs[i], ts_ms[i], payloads[i])
            except NotABlock as exc:
                undecoded.append(_undecoded(seqs[i], ts_ms[i], payloads[i], str(exc)))
            size += len(payloads[i])
            if size >= NODE_CHUNK_BYTES or n == len(blocks):
                for name, columns, count in self._node_columns(node):
                    add(name, columns, count)
                undecoded += node.undecoded
                node, size = NodeColumns(), 0
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
            if not fact.surely_fit(buffer.columns):  # else as decode would find
                _, buffer, spoiled = _fitting_rows(fact, buffer)
                failed += [(0, f"protobuf: {fact.table}.{why}") for why in spoiled.values()]
            if buffer.columns[0]:
                rows.setdefault(fact.table, []).extend(fact.dicts(buffer))
        for _, reason in failed:
            rows["undecoded"] = [_undecoded(seq, ts_ms, payload, reason)]
        if blocks:
            node = NodeColumns()
            try:
                node.add(seq, ts_ms, payload)
            except NotABlock as exc:
                node.not_a_block(seq, ts_ms, payload, str(exc))
            if not all(self._surely_fit(*table) for table in node.tables()):
                self._node_columns(node)  # sets aside what no column can hold, as decode does
            for name, names, table_rows in node.tables():
                if table_rows:
                    rows[name] = [dict(zip(names, values, strict=False)) for values in table_rows]
            if node.undecoded:
                rows["undecoded"] = sorted(node.undecoded, key=lambda row: row["idx"])
        return {
            name: [{column: row.get(column) for column in self.schemas[name].names} for row in rs]
            for name, rs in rows.items()
        }
