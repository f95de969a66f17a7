"""``replica import-node``: a node's replica_cmds files into raw segments, idempotently.

The node files are real files written here from ``fixtures/make_feed.py``'s node blocks; the
CLI runs as a subprocess, as cron runs it.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import lz4.frame
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from replica.schemas.archive import GAP_SCHEMA, ArchiveLayout
from replica.schemas.errors import ArchiveError
from replica.schemas.files import publish_parquet
from replica.schemas.lock import ArchiveLock, maintenance_lock
from replica.schemas.seqspace import NODE, write_marker

from fixtures.make_feed import START_TS_MS, node_block
from replica.maintenance.node_files import block_time_us
from replica.maintenance.node_import import import_node
from replica.maintenance.verify import read_gaps, verify
from tests.conftest import raw_rows, replica
from tests.rawarchive import payload_rows, write_segment

BASE = 990_612_480  # a block height: block BASE + i is at START_TS_MS + 80 i
_EPOCH = datetime(1970, 1, 1)


def block(seq: int) -> bytes:
    """Block ``seq`` as the node writes it, the same in every file that holds it."""
    return node_block(random.Random(seq), START_TS_MS + 80 * (seq - BASE), seq)


def node_file(
    directory: Path, height: int, count: int, *, compressed: bool = False, tail: bytes = b""
) -> Path:
    """The file named ``height``, holding blocks height+1 .. height+count, then ``tail``."""
    content = b"".join(block(seq) + b"\n" for seq in range(height + 1, height + count + 1))
    path = directory / (f"{height}.lz4" if compressed else str(height))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lz4.frame.compress(content + tail) if compressed else content + tail)
    return path


def time_us_of(raw: bytes) -> int:
    """The block's time in µs, derived apart from the importer's parser."""
    text = json.loads(raw)["abci_block"]["time"]
    return (datetime.fromisoformat(text[:26]) - _EPOCH) // timedelta(microseconds=1)


def seqs_of(archive: Path) -> list[int]:
    return [row["seq"] for row in raw_rows(archive)]


def parquet_files(archive: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in archive.rglob("*.parquet")}


def test_block_time_is_floored_to_microseconds() -> None:
    epoch_s = calendar.timegm((2025, 6, 24, 2, 56, 36))
    line = b'{"abci_block":{"round":7,"time":"2025-06-24T02:56:36.172847999"},"resps":null}'
    assert block_time_us(line) == epoch_s * 1_000_000 + 172_847
    assert block_time_us(b'{"abci_block":{"time":"2025-06-24T02:56:36.5"}}') % 10**6 == 500_000
    assert block_time_us(b'{"abci_block":{"time":"2025-06-24T02:56:36"}}') == epoch_s * 10**6
    for bad in (b"{", b'{"abci_block":{}}', b'{"abci_block":{"time":"yesterday"}}'):
        with pytest.raises(ValueError):
            block_time_us(bad)


@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(0, 10**9 - 1),
)
def test_any_block_time_maps_to_its_floored_microseconds(moment: datetime, ns: int) -> None:
    text = f"{moment:%Y-%m-%dT%H:%M:%S}.{ns:09d}"
    line = json.dumps({"abci_block": {"time": text, "round": 1}, "resps": None}).encode()
    whole_s = calendar.timegm(moment.timetuple())
    assert block_time_us(line) == whole_s * 1_000_000 + ns // 1000


@given(
    st.binary(max_size=200)
    | st.text(max_size=40).map(lambda text: json.dumps({"abci_block": {"time": text}}).encode())
)
def test_any_line_is_a_block_or_a_value_error(line: bytes) -> None:
    with contextlib.suppress(ValueError):
        block_time_us(line)


def test_plain_and_lz4_files_become_raw_rows(tmp_path: Path) -> None:
    plain = node_file(tmp_path / "node", BASE, 10)
    packed = node_file(tmp_path / "node", BASE + 10, 10, compressed=True)
    summary = import_node([packed, plain], tmp_path / "archive")
    assert (summary.files, summary.imported, summary.present) == (2, 20, 0)
    assert (summary.segments, summary.gaps, summary.failed) == (2, 0, [])
    rows = raw_rows(tmp_path / "archive")
    assert [row["seq"] for row in rows] == list(range(BASE + 1, BASE + 21))
    for row in rows:
        assert row["raw"] == block(row["seq"])
        time_us = time_us_of(row["raw"])
        assert row["ts_ms"] == time_us // 1000
        assert row["ingest_ts_us"] == row["publish_ts_us"] == row["recv_ts_us"] == time_us
    assert verify(tmp_path / "archive").ok


def test_a_directory_is_searched_like_the_node_nests_it(tmp_path: Path) -> None:
    node = tmp_path / "replica_cmds"
    node_file(node / "990612000" / "20261121", BASE + 20, 5)
    node_file(node / "990612000" / "20261120", BASE, 10, compressed=True)
    node_file(node / "990612000" / "20261120", BASE + 10, 10)
    (node / "990612000" / "notes.txt").write_text("not the node's")
    (node / "990612000" / "20261120" / f".{BASE + 30}.tmp").write_text("not the node's")
    summary = import_node([node], tmp_path / "archive")
    assert (summary.files, summary.imported) == (3, 25)
    assert seqs_of(tmp_path / "archive") == list(range(BASE + 1, BASE + 26))


def test_holes_between_files_are_recorded_as_import_gaps(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    node_file(tmp_path / "node", BASE, 10)
    node_file(tmp_path / "node", BASE + 20, 10)
    node_file(tmp_path / "node", BASE + 40, 5)
    summary = import_node([tmp_path / "node"], archive)
    assert (summary.imported, summary.gaps) == (25, 2)
    rows = {row["seq"]: row for row in raw_rows(archive)}
    gaps = read_gaps(archive)
    assert [(g.from_seq, g.to_seq, g.missing, g.cause) for g in gaps] == [
        (BASE + 11, BASE + 20, 10, "import"),
        (BASE + 31, BASE + 40, 10, "import"),
    ]
    assert gaps[0].before_ts_ms == rows[BASE + 10]["ts_ms"]
    assert gaps[0].after_ts_ms == rows[BASE + 21]["ts_ms"]
    assert verify(archive).ok


def test_importing_again_writes_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    node_file(tmp_path / "node", BASE, 10)
    node_file(tmp_path / "node", BASE + 20, 10, compressed=True)
    import_node([tmp_path / "node"], archive)
    before = parquet_files(archive)
    again = import_node([tmp_path / "node"], archive)
    assert (again.imported, again.present, again.segments, again.gaps) == (0, 20, 0, 0)
    assert parquet_files(archive) == before


def test_a_later_file_then_the_middle_one(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    first = node_file(tmp_path / "node", BASE, 10)
    middle = node_file(tmp_path / "node", BASE + 10, 10)
    later = node_file(tmp_path / "node", BASE + 20, 10)
    import_node([first], archive)
    assert import_node([later], archive).gaps == 1
    filled = import_node([middle, later], archive)
    assert (filled.imported, filled.present, filled.gaps) == (10, 10, 0)
    assert seqs_of(archive) == list(range(BASE + 1, BASE + 31))
    report = verify(archive)
    assert report.ok, report.problems
    assert report.missing == 0


@pytest.mark.parametrize(
    "tail",
    [b'{"abci_block":{"time":"2026-11-', b"{}\n", block(BASE + 6)],
    ids=["cut", "no time", "no newline"],
)
def test_an_unfinished_last_line_is_skipped_until_completed(tmp_path: Path, tail: bytes) -> None:
    archive = tmp_path / "archive"
    path = node_file(tmp_path / "node", BASE, 5, tail=tail)
    summary = import_node([path], archive)
    assert (summary.imported, summary.truncated) == (5, 1)
    [warning] = summary.warnings
    assert warning.startswith(f"{path}:6: last line skipped, the node has not finished it (")
    assert warning.endswith("); import the file again once it has")
    node_file(tmp_path / "node", BASE, 8)
    completed = import_node([path], archive)
    assert (completed.imported, completed.present, completed.truncated) == (3, 5, 0)
    assert seqs_of(archive) == list(range(BASE + 1, BASE + 9))
    assert verify(archive).ok


def test_an_hour_boundary_splits_the_segments(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    midnight = BASE + 1500  # START_TS_MS is 23:58:00 UTC; 80 ms a block
    import_node([node_file(tmp_path / "node", midnight - 5, 10)], archive)
    segments = ArchiveLayout(archive).segments()
    assert [(s.first_seq, s.last_seq) for s in segments] == [
        (midnight - 4, midnight - 1),
        (midnight, midnight + 5),
    ]
    assert [s.path.parent.parent.name for s in segments] == ["date=2026-11-20", "date=2026-11-21"]
    assert verify(archive).ok


def test_seqs_inside_a_recorded_segment_are_never_rewritten(tmp_path: Path) -> None:
    """A recorder segment with a hole inside keeps it: filling it would need a rewrite."""
    archive = tmp_path / "archive"
    write_marker(archive, NODE)  # a node archive, whatever wrote this segment
    rows = payload_rows([b"recorded"] * 11, start_seq=BASE + 5, start_ts_ms=START_TS_MS)
    del rows[3:5]  # the recorder missed BASE+8 and BASE+9
    recorded = write_segment(archive, rows)
    gap = {"from_seq": BASE + 8, "to_seq": BASE + 9, "missing": 2, "cause": "jump"}
    gap |= {"detected_ts_us": 0, "before_ts_ms": START_TS_MS, "after_ts_ms": START_TS_MS}
    layout = ArchiveLayout(archive)
    publish_parquet(
        pa.Table.from_pylist([gap], schema=GAP_SCHEMA),
        layout.unit_path(layout.gaps_dir, START_TS_MS, "recorder"),
    )
    summary = import_node([node_file(tmp_path / "node", BASE, 20)], archive)
    assert (summary.imported, summary.present, summary.segments) == (9, 9, 2)
    assert summary.warnings == [
        f"{tmp_path / 'node' / str(BASE)}: 2 blocks in seqs {BASE + 5}-{BASE + 15} fall in "
        f"holes inside {recorded.path}, which is never rewritten; they stay gaps"
    ]
    by_seq = {row["seq"]: row["raw"] for row in raw_rows(archive)}
    assert by_seq[BASE + 7] == b"recorded" and by_seq[BASE + 16] == block(BASE + 16)
    assert BASE + 8 not in by_seq
    assert verify(archive).ok


def test_unreadable_lz4_fails_its_file_only(tmp_path: Path) -> None:
    node_file(tmp_path / "node", BASE, 5)
    (tmp_path / "node" / f"{BASE + 5}.lz4").write_bytes(b"not lz4")
    summary = import_node([tmp_path / "node"], tmp_path / "archive")
    assert summary.imported == 5
    assert [line.split(": ", 1)[0] for line in summary.failed] == [
        str(tmp_path / "node" / f"{BASE + 5}.lz4")
    ]
    assert "cannot decompress" in summary.failed[0]


@pytest.mark.parametrize(
    ("leftover", "message"),
    [
        ("spool/unit.wal", "spool files"),
        (".compact/date=2026-11-20.json", "interrupted compaction"),
    ],
)
def test_an_unsettled_archive_stops_an_import(tmp_path: Path, leftover: str, message: str) -> None:
    """Unpublished segments may hold the seqs an import would write, and then overlap them."""
    (tmp_path / "archive" / leftover).parent.mkdir(parents=True)
    (tmp_path / "archive" / leftover).write_bytes(b"")
    with pytest.raises(ArchiveError, match=message):
        import_node([node_file(tmp_path / "node", BASE, 5)], tmp_path / "archive")
    assert not ArchiveLayout(tmp_path / "archive").segments()


def test_cli_imports_reports_and_then_writes_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    node_file(tmp_path / "node", BASE, 10)
    node_file(tmp_path / "node", BASE + 20, 10, compressed=True, tail=b'{"abci')
    result = replica("import-node", tmp_path / "node", archive)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "2 files, 20 blocks imported, 0 already present, 2 segments written, "
        "1 gaps recorded, 1 unfinished last lines skipped\n"
    )
    assert result.stderr == (
        f"replica: warning: {tmp_path / 'node' / f'{BASE + 20}.lz4'}:11: last line skipped, "
        "the node has not finished it (no newline at its end); import the file again once "
        "it has\n"
    )
    again = replica("import-node", tmp_path / "node", archive)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("2 files, 0 blocks imported, 20 already present")
    assert again.stdout.endswith(": nothing written\n")
    assert replica("verify", archive).returncode == 0


def test_cli_a_bad_middle_line_fails_its_file_and_exits_1(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    node_file(tmp_path / "node", BASE, 5)
    bad = node_file(tmp_path / "node", BASE + 5, 2, tail=b"not json\n" + block(BASE + 8) + b"\n")
    node_file(tmp_path / "node", BASE + 10, 5)
    result = replica("import-node", tmp_path / "node", archive)
    assert result.returncode == 1
    assert result.stderr.startswith(f"replica: error: {bad}:3: not a node block: ")
    assert result.stderr.endswith("; nothing of this file imported\n")
    assert result.stderr.count("\n") == 1
    assert seqs_of(archive) == [*range(BASE + 1, BASE + 6), *range(BASE + 11, BASE + 16)]
    assert [(g.from_seq, g.to_seq) for g in read_gaps(archive)] == [(BASE + 6, BASE + 10)]
    assert verify(archive).ok


def test_cli_a_name_that_is_not_a_height_is_usage(tmp_path: Path) -> None:
    path = tmp_path / "blocks.json"
    path.write_bytes(block(BASE + 1) + b"\n")
    result = replica("import-node", path, tmp_path / "archive")
    assert result.returncode == 2
    assert result.stderr.startswith(f"replica: error: {path}: a replica_cmds file is named by")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "archive").exists()


@pytest.mark.parametrize("holder", ["recorder", "replica compact"])
def test_cli_a_held_archive_exits_4(tmp_path: Path, holder: str) -> None:
    path = node_file(tmp_path / "node", BASE, 5)
    layout = ArchiveLayout(tmp_path / "archive")
    if holder == "recorder":
        lock = ArchiveLock(layout.lock_path)
    else:
        lock = maintenance_lock(layout, holder)
    with lock:
        result = replica("import-node", path, tmp_path / "archive")
    assert result.returncode == 4
    assert f"held by {holder} (pid {os.getpid()}); an import " in result.stderr
    assert result.stderr.count("\n") == 1
    assert not ArchiveLayout(tmp_path / "archive").segments()


def test_a_rerun_removes_the_temporary_files_a_killed_import_left(tmp_path: Path) -> None:
    """The import is killed (SIGKILL) once its first segment is written under its temporary name
    and before it is renamed: the file keeps the dead pid in its name. A temporary file whose
    process still runs is not the rerun's to remove."""
    path = node_file(tmp_path / "node", BASE, 5)
    archive = tmp_path / "archive"
    script = """
import os, signal, sys
from pathlib import Path
from replica.maintenance.node_import import import_node

os.rename = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
import_node([Path(sys.argv[1])], Path(sys.argv[2]))
"""
    with subprocess.Popen([sys.executable, "-c", script, path, archive]) as killed:
        assert killed.wait(timeout=60) == -9
    [left] = ArchiveLayout(archive).temporary_files()
    assert left.name.endswith(f".parquet.{killed.pid}.tmp")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as running:
        kept = left.with_name(f".another.parquet.{running.pid}.tmp")
        kept.write_bytes(b"PAR1")
        result = replica("import-node", path, archive)
        running.kill()
    assert result.returncode == 0, result.stderr
    assert ArchiveLayout(archive).temporary_files() == [kept]
    assert seqs_of(archive) == list(range(BASE + 1, BASE + 6))
