"""Payload bytes into typed tables: a pure function of the bytes, no I/O.

Each payload's form is detected on its own: a node JSON block starts with ``{`` (as protobuf
can never do: that byte would open a group on field 15), anything else is parsed as the
protobuf message. What neither form explains becomes an ``undecoded`` row with a reason; no
payload raises and none is dropped.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError

from decoder.messages import PayloadMessage, contract_v1
from decoder.node import NotABlock, decode_block
from decoder.protobuf import KEY_FIELDS, CommandPlan
from schemas.archive import MAX_TS_MS
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
        if fact.table not in tables:
            tables[fact.table] = [*KEY_FIELDS]
            _merge(fact.table, tables[fact.table], plan.envelope.fields)
        _merge(fact.table, tables[fact.table], fact.fields)
    return tables


# Node blocks carry the v1 facts under the v1 column names, whatever message protobuf payloads
# are parsed as.
_V1_FACT_SCHEMAS = _fact_schemas(CommandPlan(contract_v1().descriptor))


class _TableColumns:
    """Column lists of one table, filled a batch or a row at a time."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.rows = 0
        self._last_key = (-1, -1)
        self._in_order = True

    def _follows(self, first_key: tuple[int, int], last_key: tuple[int, int]) -> None:
        self._in_order = self._in_order and first_key > self._last_key
        self._last_key = last_key

    def extend(self, values: dict[str, list[Any]], n: int) -> None:
        """Add ``n`` rows, already in (seq, idx) order, as columns."""
        for name, column in self.columns.items():
            given = values.get(name)
            column.extend(itertools.repeat(None, n) if given is None else given)
        self.rows += n
        seq, idx = values["seq"], values["idx"]
        self._follows((seq[0], idx[0]), (seq[-1], idx[-1]))

    def append(self, row: dict[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(row.get(name))
        self.rows += 1
        key = (row["seq"], row["idx"])
        self._follows(key, key)

    def table(self) -> pa.Table:
        arrays = [pa.array(self.columns[f.name], f.type) for f in self.schema]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if not self._in_order:
            order = pc.sort_indices(table, [("seq", "ascending"), ("idx", "ascending")])
            table = table.take(order)
        return table


class Decoder:
    """Decodes batches of payloads into one Arrow table per kind of fact."""

    def __init__(self, message: PayloadMessage | None = None) -> None:
        self.message = message or contract_v1()
        self.version = f"{DECODER_VERSION}+{self.message.fingerprint}"
        self._parse = self.message.cls.FromString
        self._plan = CommandPlan(self.message.descriptor)
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

        commands: dict[str, list[Any]] = defaultdict(list)
        positions: dict[str, list[int]] = defaultdict(list)
        parse, oneof, time_of = self._parse, self._plan.oneof, self._plan.time_of
        for i, payload in enumerate(payloads):
            if payload[:1] == b"{":
                self._add_block(i, seqs[i], payload, table, undecoded)
                continue
            try:
                command = parse(payload)
            except DecodeError as exc:
                undecoded(i, f"protobuf: {exc}")
                continue
            kind = command.WhichOneof(oneof) if oneof else next(iter(self._plan.kinds))
            if kind is None:
                undecoded(i, "empty payload" if not payload else "protobuf: no command kind set")
            elif time_of is not None and time_of(command) > MAX_TS_MS:
                undecoded(i, f"protobuf: time_ms {time_of(command)} is beyond the year 9999")
            else:
                commands[kind].append(command)
                positions[kind].append(i)
        for kind, batch in commands.items():
            self._add_facts(kind, batch, positions[kind], seqs, ts_ms, table)
        return {name: columns.table() for name, columns in tables.items()}

    def _add_facts(self, kind, batch, positions, seqs, ts_ms, table) -> None:
        plan = self._plan
        fact = plan.kinds[kind]
        rows = fact.rows(batch)
        seq_col = [seqs[p] for p in positions]
        if plan.time_of is None:
            time_col = [ts_ms[p] for p in positions]
        else:
            time_col = [
                t or ts_ms[p] for t, p in zip(map(plan.time_of, batch), positions, strict=True)
            ]
        envelope = plan.envelope.read(batch)
        owners = rows.owners
        if len(owners) != len(batch):
            seq_col = [seq_col[o] for o in owners]
            time_col = [time_col[o] for o in owners]
            envelope = [[column[o] for o in owners] for column in envelope]
        n = len(owners)
        values = {"seq": seq_col, "idx": rows.idx, "time_ms": time_col, "kind": [kind] * n}
        values.update(zip((f.name for f in plan.envelope.fields), envelope, strict=True))
        values.update(zip((f.name for f in fact.fields), rows.columns, strict=True))
        table(fact.table).extend(values, n)

    @staticmethod
    def _add_block(i, seq, payload, table, undecoded) -> None:
        try:
            rows = decode_block(payload)
        except NotABlock as exc:
            undecoded(i, str(exc))
            return
        for name, table_rows in rows.items():
            for row in table_rows:
                row["seq"] = seq
                if name == "undecoded":
                    row["size"] = len(payload)
                table(name).append(row)

    def decode_one(self, seq: int, ts_ms: int, payload: bytes) -> dict[str, list[dict[str, Any]]]:
        """One payload's rows, by table, as Python dicts."""
        return {
            name: table.to_pylist()
            for name, table in self.decode([seq], [ts_ms], [payload]).items()
        }
