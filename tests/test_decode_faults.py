"""``replica decode`` under hostile payloads, schemas and kills: one payload never stops a
decode, a recursive schema is one line, a huge block is quarantined, and the ``--jobs``
workers die with their parent."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from grpc_tools import protoc
from replica.decoder.protobuf import MAX_PAYLOAD_BYTES

import replica
from fixtures.make_feed import START_TS_MS, protobuf_command
from tests.conftest import replica as run_replica
from tests.rawarchive import feed_rows, payload_rows, write_archive

BLOCK_TIME = "2025-06-24T02:56:36.172847427"
VAULT = "0x" + "d1" * 20
GUARD_S = 60.0  # a guard against hanging, never a performance expectation


def _block(*actions: dict[str, Any], pad: int = 0) -> bytes:
    signed = [
        {"action": action, "nonce": 1_750_733_795_000 + i} for i, action in enumerate(actions)
    ]
    bundle = {"signed_actions": signed, "broadcaster": "0x" + "11" * 20, "broadcaster_nonce": 1}
    block = {"time": BLOCK_TIME, "round": 7, "signed_action_bundles": [["0x" + "ab" * 32, bundle]]}
    return json.dumps({"abci_block": block, "resps": None}).encode() + b" " * pad


def _rows(archive: Path, table: str) -> list[tuple]:
    files = list((archive / "decoded" / table).rglob("*.parquet"))
    if not files:
        return []
    return duckdb.sql(
        f"SELECT * EXCLUDE (date) FROM read_parquet('{archive}/decoded/{table}/**/*.parquet', "
        "hive_partitioning = true) ORDER BY seq, idx"
    ).fetchall()


def _column(archive: Path, table: str, column: str) -> list[Any]:
    return [
        row[0]
        for row in duckdb.sql(
            f"SELECT {column} FROM read_parquet('{archive}/decoded/{table}/**/*.parquet') "
            "ORDER BY seq, idx"
        ).fetchall()
    ]


# --- one payload never stops a decode ---------------------------------------------------------

# 1 followed by 400 zeros: beyond a double, let alone the transfers.amount column. It raised
# OverflowError out of decode, and every rerun failed the same way.
VAULT_1E400 = {"type": "vaultTransfer", "vaultAddress": VAULT, "isDeposit": True, "usd": 10**400}
# Beyond uint64: found where rows become columns; it cost the whole action (no actions row).
CANCEL_OID_2_64 = {"type": "cancel", "cancels": [{"a": 1, "o": 2**64}]}
ORDER = {"type": "order", "orders": [{"a": 3, "b": True, "p": "1.5", "s": "2", "r": False}]}


def test_a_value_no_column_holds_is_undecoded_and_decoding_goes_on(tmp_path: Path):
    archive = tmp_path / "archive"
    payloads = [
        _block(VAULT_1E400, {"type": "noop"}),
        _block(CANCEL_OID_2_64, ORDER),
        protobuf_command(random.Random(1), START_TS_MS),
        _block(ORDER),
    ]
    write_archive(archive, payload_rows(payloads))
    first, again = run_replica("decode", archive), run_replica("decode", archive)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert again.returncode == 0 and "1 already up to date" in again.stdout
    seqs = [row["seq"] for row in payload_rows(payloads)]
    undecoded = {(seq, idx): reason for seq, idx, _, reason, _ in _rows(archive, "undecoded")}
    assert set(undecoded) == {(seqs[0], 0), (seqs[1], 0)}, undecoded
    assert "vaultTransfer" in undecoded[seqs[0], 0] and "usd" in undecoded[seqs[0], 0]
    assert "cancels.oid" in undecoded[seqs[1], 0] and "uint64" in undecoded[seqs[1], 0]
    # The actions keep their rows (kind, nonce, the whole JSON): only their facts are lost.
    actions = _rows(archive, "actions")
    kinds = [(seq, idx, kind) for seq, idx, _, kind, *_ in actions]
    assert kinds == [
        (seqs[0], 0, "vaultTransfer"),
        (seqs[0], 1, "noop"),
        (seqs[1], 0, "cancel"),
        (seqs[1], 1, "order"),
        (seqs[3], 0, "order"),
    ]
    assert json.loads(_column(archive, "actions", "action")[0])["usd"] == 10**400  # kept whole
    assert not _rows(archive, "transfers") and not _rows(archive, "cancels")
    assert [seq for seq, *_ in _rows(archive, "orders")].count(seqs[1]) == 1
    assert seqs[3] in _column(archive, "orders", "seq")
    # replay(decode=True) gives the same rows, payload by payload, without raising.
    decoded = {command.seq: command.rows for command in replica.open(archive).replay(decode=True)}
    assert decoded[seqs[0]]["undecoded"][0]["reason"] == undecoded[seqs[0], 0]
    assert decoded[seqs[1]]["undecoded"][0]["reason"] == undecoded[seqs[1], 0]


PROTO2_TEXT = """syntax = "proto2";
package loose;
message Cmd {
  optional string memo = 1;
  optional uint64 n = 2;
  repeated Item items = 3;
}
message Item {
  optional string note = 1;
}
"""
NOT_UTF8 = b"\x0a\x02\xff\xfe"  # field 1, two bytes that are not UTF-8


def test_a_protobuf_string_that_is_not_utf8_is_undecoded(tmp_path: Path):
    """proto2 does not check that strings are UTF-8: the parser hands over bytes, which no
    string column holds (pa.array raised ArrowInvalid out of decode). In the command's own
    fields or in an element of the repeated field it is expanded by, it costs that command."""
    schema = _descriptor_set(tmp_path, "loose.proto", PROTO2_TEXT)
    item = b"\x1a\x04\x0a\x02ok"  # items { note: "ok" }
    bad_item = b"\x1a" + bytes([len(NOT_UTF8)]) + NOT_UTF8
    payloads = [NOT_UTF8 + b"\x10\x05" + item, b"\x0a\x02ok" + item + bad_item, b"\x10\x07" + item]
    archive = tmp_path / "archive"
    write_archive(archive, payload_rows(payloads))
    result = run_replica("decode", archive, "--schema", schema, "--message", "loose.Cmd")
    assert result.returncode == 0, result.stderr
    reasons = {seq: reason for seq, _, _, reason, _ in _rows(archive, "undecoded")}
    assert reasons == {
        1000: "protobuf: cmd.memo: b'\\xff\\xfe' does not fit string",
        1001: "protobuf: cmd.note: b'\\xff\\xfe' does not fit string",
    }
    assert _rows(archive, "cmd") == [(1002, 0, 1_795_219_080_020, "cmd", None, 7, "ok")]


# --- a block too large to decode --------------------------------------------------------------


def test_a_payload_over_the_size_limit_is_undecoded_as_too_large(tmp_path: Path):
    """A 52 MB node block took 3 GB to decode; over MAX_PAYLOAD_BYTES it is not parsed."""
    huge = _block(ORDER, pad=MAX_PAYLOAD_BYTES)  # whitespace: cheap to write, valid JSON
    archive = tmp_path / "archive"
    write_archive(archive, payload_rows([_block(ORDER), huge, _block(ORDER)]))
    result = run_replica("decode", archive)
    assert result.returncode == 0, result.stderr
    ((seq, idx, _, reason, size),) = _rows(archive, "undecoded")
    assert (seq, idx, size) == (1001, 0, len(huge))
    assert reason.startswith("too_large: ") and str(MAX_PAYLOAD_BYTES) in reason
    assert _column(archive, "orders", "seq") == [1000, 1002]


# --- a recursive schema -----------------------------------------------------------------------


def _descriptor_set(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    out = tmp_path / f"{name}.pb"
    args = ["protoc", f"-I{tmp_path}", "--include_imports", f"--descriptor_set_out={out}", name]
    assert protoc.main(args) == 0
    return out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("message Node {\n  Node child = 1;\n  int64 n = 2;\n}\n", "Node"),
        (  # through the oneof and another message
            "message Cmd {\n  oneof kind {\n    Wrap wrap = 1;\n  }\n}\n"
            "message Wrap {\n  Inner inner = 1;\n}\n"
            "message Inner {\n  Wrap back = 1;\n}\n",
            "Cmd",
        ),
    ],
    ids=["itself", "through-another"],
)
def test_a_recursive_schema_is_one_line_and_exit_2(tmp_path: Path, text: str, message: str):
    schema = _descriptor_set(tmp_path, "rec.proto", f'syntax = "proto3";\npackage rec;\n{text}')
    archive = tmp_path / "archive"
    write_archive(archive, feed_rows()[:10])
    result = run_replica("decode", archive, "--schema", schema, "--message", f"rec.{message}")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "contains itself" in result.stderr and "Traceback" not in result.stderr
    assert not (archive / "decoded").exists()
    # A repeated field is JSON text, not columns: a message holding itself there decodes.
    text = 'syntax = "proto3";\npackage tree;\nmessage Node {\n  repeated Node kids = 1;\n}\n'
    tree = _descriptor_set(tmp_path, "tree.proto", text)
    write_archive(tmp_path / "trees", payload_rows([b"\x0a\x02\x0a\x00"]))
    result = run_replica("decode", tmp_path / "trees", "--schema", tree, "--message", "tree.Node")
    assert result.returncode == 0, result.stderr
    assert _column(tmp_path / "trees", "node", "kids") == ["[{}]"]  # the one kid's own kids


# --- workers die with their parent -------------------------------------------------------------


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_text()
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _busy_archive(tmp_path: Path) -> Path:
    """An archive of a dozen segments, a few seconds of decoding."""
    archive = tmp_path / "archive"
    rows = feed_rows()
    seqs, hours = rows[-1]["seq"] - rows[0]["seq"] + 1, rows[-1]["ts_ms"] - rows[0]["ts_ms"]
    many = [
        row | {"seq": row["seq"] + copy * seqs, "ts_ms": row["ts_ms"] + copy * (hours + 3_600_000)}
        for copy in range(6)
        for row in rows
    ]
    write_archive(archive, many, per_segment=1500)
    return archive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes in /proc")
def test_jobs_2_decodes_in_the_started_process_beside_one_worker(tmp_path: Path):
    """``--jobs 2`` spawned two workers and left the started process, its imports done,
    waiting for them; each worker paid the imports again before decoding. Now the started
    process decodes too, beside one worker."""
    archive = _busy_archive(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-m", "replica", "decode", "--jobs", "2", "--quiet", str(archive)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    workers: set[int] = set()
    deadline = time.monotonic() + GUARD_S * 5
    while parent.poll() is None and time.monotonic() < deadline:
        children = _children(parent.pid).items()
        workers |= {pid for pid, command in children if "spawn_main" in command}
        time.sleep(0.02)
    if parent.poll() is None:
        parent.kill()
    _, stderr = parent.communicate()
    assert parent.returncode == 0, stderr
    assert len(workers) == 1, f"{len(workers)} worker processes for --jobs 2"
    assert len(list((archive / "decoded" / "_segments").rglob("*.parquet"))) > 2


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes in /proc")
def test_ctrl_c_while_a_worker_starts_is_one_line(tmp_path: Path):
    """Ctrl-C reaches the whole process group: a worker still importing the decoder, before it
    could ignore SIGINT, printed a ``KeyboardInterrupt`` traceback beside the one line."""
    archive = _busy_archive(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-m", "replica", "decode", "--jobs", "2", str(archive)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    try:
        deadline = time.monotonic() + GUARD_S
        while not any("spawn_main" in c for c in _children(parent.pid).values()):
            assert parent.poll() is None, "the decode ended before a worker started"
            assert time.monotonic() < deadline, "no worker started in time"
            time.sleep(0.002)
        time.sleep(0.1)  # into its imports
        os.killpg(parent.pid, signal.SIGINT)  # as Ctrl-C does
        _, stderr = parent.communicate(timeout=GUARD_S * 5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 130, stderr
    assert stderr.startswith("replica: interrupted after decoding ") and stderr.count("\n") == 1
    assert "Traceback" not in stderr


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes in /proc")
def test_workers_die_when_their_parent_is_killed(tmp_path: Path):
    """``kill -9`` of ``replica decode --jobs 2`` left its workers waiting forever for work,
    about 130 MB each. (``--jobs 3``: the decode itself takes a third of the work, beside two
    worker processes.)"""
    archive = _busy_archive(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-m", "replica", "decode", "--jobs", "3", "--quiet", str(archive)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: dict[int, str] = {}
    workers: list[int] = []  # and the resource tracker, which lives as long as they do
    try:
        deadline = time.monotonic() + GUARD_S
        # Busy: both workers started, and decoded files being written.
        while len(workers) < 2 or not list((archive / "decoded").rglob("*parquet*")):
            assert parent.poll() is None, "the decode ended before it could be killed"
            assert time.monotonic() < deadline, "the workers did not start decoding in time"
            children = _children(parent.pid)
            workers = [pid for pid, command in children.items() if "spawn_main" in command]
            time.sleep(0.05)
        workers = list(children)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + GUARD_S
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid in workers if _alive(pid)]
        assert not survivors, f"workers {survivors} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    again = run_replica("decode", archive, timeout=300)  # the next run decodes everything
    assert again.returncode == 0 and again.stdout.startswith("decoded "), again.stderr
    assert "0 failed" in again.stdout
