"""The protobuf contract: the committed generated code is what protoc makes of the .proto, the
field numbers are the contract's, and the decoder follows the descriptors: a field or message
added to a schema becomes a column or table with no decoder change, and ``--schema`` decodes
with another schema altogether."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from replica.decoder.core import Decoder
from replica.decoder.messages import from_descriptor_set
from replica.schemas.errors import UsageError
from replica.schemas.hyperliquid.replica.v1 import replica_pb2

from tests.rawarchive import payload_rows, write_archive

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
PROTO = "hyperliquid/replica/v1/replica.proto"


def _protoc(*args: str) -> None:
    assert protoc.main(["protoc", *args]) == 0, f"protoc {' '.join(args)} failed"


def test_committed_generated_code_is_what_protoc_makes_of_the_proto(tmp_path: Path):
    _protoc(f"-I{SCHEMAS}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", PROTO)
    for name in ("replica_pb2.py", "replica_pb2.pyi"):
        generated = (tmp_path / "hyperliquid/replica/v1" / name).read_bytes()
        committed = (SCHEMAS / "hyperliquid/replica/v1" / name).read_bytes()
        assert generated == committed, (
            f"{name} is stale: regenerate with python -m grpc_tools.protoc -Ischemas "
            f"--python_out=schemas --pyi_out=schemas schemas/{PROTO}"
        )


CONTRACT = {
    "Trigger": {"trigger_px": (1, "double"), "is_market": (2, "bool"), "take_profit": (3, "bool")},
    "OrderPlace": {
        "asset": (1, "uint32"),
        "is_buy": (2, "bool"),
        "px": (3, "double"),
        "sz": (4, "double"),
        "reduce_only": (5, "bool"),
        "tif": (6, "enum"),
        "trigger": (7, "message"),
        "cloid": (8, "bytes"),
        "oid": (9, "uint64"),
    },
    "OrderCancel": {"asset": (1, "uint32"), "oid": (2, "uint64"), "cloid": (3, "bytes")},
    "CancelAll": {"assets": (1, "uint32")},
    "Fill": {
        "asset": (1, "uint32"),
        "px": (2, "double"),
        "sz": (3, "double"),
        "taker_side": (4, "enum"),
        "maker": (5, "bytes"),
        "taker": (6, "bytes"),
        "maker_oid": (7, "uint64"),
        "taker_oid": (8, "uint64"),
        "tid": (9, "uint64"),
        "fee": (10, "double"),
    },
    "Liquidation": {
        "asset": (1, "uint32"),
        "liquidated_user": (2, "bytes"),
        "is_long": (3, "bool"),
        "sz": (4, "double"),
        "mark_px": (5, "double"),
        "insurance_fund_delta": (6, "double"),
    },
    "FundingRate": {"asset": (1, "uint32"), "rate": (2, "double"), "premium": (3, "double")},
    "FundingSettlement": {"rates": (1, "message")},
    "OraclePrice": {"asset": (1, "uint32"), "px": (2, "double")},
    "OracleUpdate": {"validator": (1, "bytes"), "prices": (2, "message")},
    "Withdrawal": {
        "destination": (1, "bytes"),
        "amount_usd": (2, "double"),
        "nonce": (3, "uint64"),
    },
    "Deposit": {
        "depositor": (1, "bytes"),
        "amount_usd": (2, "double"),
        "eth_tx_hash": (3, "bytes"),
    },
    "ReplicaCommand": {
        "block": (1, "uint64"),
        "time_ms": (2, "uint64"),
        "user": (3, "bytes"),
        "order": (10, "message"),
        "cancel": (11, "message"),
        "cancel_all": (12, "message"),
        "fill": (13, "message"),
        "liquidation": (14, "message"),
        "funding": (15, "message"),
        "oracle": (16, "message"),
        "withdrawal": (17, "message"),
        "deposit": (18, "message"),
    },
}
_TYPE_NAMES = {
    getattr(descriptor_pb2.FieldDescriptorProto, f"TYPE_{name.upper()}"): name
    for name in ("double", "bool", "uint32", "uint64", "bytes", "enum", "message")
}


def test_field_numbers_and_types_are_the_contracts():
    file = replica_pb2.DESCRIPTOR
    assert file.package == "hyperliquid.replica.v1"
    actual = {
        name: {f.name: (f.number, _TYPE_NAMES[f.type]) for f in message.fields}
        for name, message in file.message_types_by_name.items()
    }
    assert actual == CONTRACT
    enums = {
        name: {v.name: v.number for v in enum.values}
        for name, enum in file.enum_types_by_name.items()
    }
    assert enums == {
        "Side": {"SIDE_UNSPECIFIED": 0, "BID": 1, "ASK": 2},
        "Tif": {"TIF_UNSPECIFIED": 0, "GTC": 1, "IOC": 2, "ALO": 3},
    }
    kind = file.message_types_by_name["ReplicaCommand"].oneofs_by_name["kind"]
    assert [f.number for f in kind.fields] == list(range(10, 19))


# v1 grown by one field and one message, in another package: what a v2 might look like.
GROWN = (SCHEMAS / PROTO).read_text().replace(
    "package hyperliquid.replica.v1;", "package test.grown;"
).replace("  uint64 oid = 9;\n}", "  uint64 oid = 9;\n  string builder = 20;\n}").replace(
    "    Deposit deposit = 18;\n",
    "    Deposit deposit = 18;\n    VaultFlow vault_flow = 19;\n",
) + (
    "\nmessage VaultFlow {\n  bytes vault = 1;\n  sint64 delta_usd_cents = 2;\n"
    "  optional string memo = 3;\n  repeated string tags = 4;\n}\n"
)


@pytest.fixture
def grown_schema(tmp_path: Path) -> Path:
    (tmp_path / "grown.proto").write_text(GROWN)
    out = tmp_path / "grown.pb"
    _protoc(f"-I{tmp_path}", "--include_imports", f"--descriptor_set_out={out}", "grown.proto")
    return out


def _grown_command(schema: Path):
    return from_descriptor_set(schema, "test.grown.ReplicaCommand").cls


def test_an_added_field_and_message_need_no_decoder_code(grown_schema: Path):
    command = _grown_command(grown_schema)
    payloads = [
        command(time_ms=5, order={"asset": 3, "px": 1.5, "builder": "hyperdash"}),
        command(time_ms=6, vault_flow={"vault": b"\xab" * 20, "delta_usd_cents": -250}),
        command(time_ms=7, vault_flow={"memo": "x", "tags": ["a", "b"]}),
    ]
    decoder = Decoder(from_descriptor_set(grown_schema, "test.grown.ReplicaCommand"))
    tables = decoder.decode([1, 2, 3], [0, 0, 0], [p.SerializeToString() for p in payloads])
    orders = tables["orders"].to_pylist()
    assert [(o["asset"], o["px"], o["builder"]) for o in orders] == [(3, 1.5, "hyperdash")]
    flows = tables["vault_flow"].to_pylist()
    assert [(f["seq"], f["idx"]) for f in flows] == [(2, 0), (3, 0), (3, 1)]
    assert flows[0]["vault"] == "0x" + "ab" * 20 and flows[0]["delta_usd_cents"] == -250
    assert flows[0]["memo"] is None and flows[0]["tag"] is None  # unset optional, no elements
    assert [(f["memo"], f["tag"]) for f in flows[1:]] == [("x", "a"), ("x", "b")]
    assert decoder.version != Decoder().version


def test_cli_decodes_with_another_schema_altogether(tmp_path: Path, grown_schema: Path):
    command = _grown_command(grown_schema)
    payloads = [
        command(block=9, time_ms=1_795_219_080_000 + i, vault_flow={"delta_usd_cents": i})
        for i in range(20)
    ]
    archive = tmp_path / "archive"
    write_archive(archive, payload_rows([p.SerializeToString() for p in payloads]))

    def decode(*args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "replica", "decode", str(archive), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = decode("--schema", grown_schema, "--message", "test.grown.ReplicaCommand")
    assert result.returncode == 0, result.stderr
    total = duckdb.sql(
        f"SELECT sum(delta_usd_cents), count(*) FROM "
        f"read_parquet('{archive}/decoded/vault_flow/**/*.parquet')"
    ).fetchall()
    assert total == [(190, 20)]
    # Back on v1 the same payloads are re-decoded: v1 has no member 19, so none decodes.
    again = decode()
    assert "decoded 1 of 1 segments" in again.stdout
    assert "undecoded" in again.stdout
    assert not list((archive / "decoded" / "vault_flow").rglob("*.parquet"))

    missing = decode("--schema", grown_schema, "--message", "test.grown.Nope")
    assert missing.returncode == 2
    assert "--message test.grown.Nope: no such message" in missing.stderr
    assert "test.grown.ReplicaCommand" in missing.stderr


def test_a_schema_that_contradicts_the_node_tables_is_refused(tmp_path: Path):
    (tmp_path / "clash.proto").write_text(
        'syntax = "proto3";\npackage clash;\nmessage Cmd {\n  oneof kind { Px order = 1; }\n}\n'
        "message Px {\n  string px = 1;\n}\n"
    )
    out = tmp_path / "clash.pb"
    _protoc(f"-I{tmp_path}", f"--descriptor_set_out={out}", "clash.proto")
    with pytest.raises(UsageError, match="table orders: column px is string in one kind"):
        Decoder(from_descriptor_set(out, "clash.Cmd"))
