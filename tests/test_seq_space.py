"""One archive, one seq space: feed seqs and node block heights are never mixed, and node blocks
out of the node's order are reported where they are.

Archives are real files; the CLI runs as a subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replica.schemas.archive import ArchiveLayout
from replica.schemas.seqspace import MARKER

from fixtures.make_feed import START_TS_MS
from replica.maintenance.node_import import import_node
from replica.maintenance.verify import verify
from replica.sql import connect
from tests.conftest import replica
from tests.rawarchive import payload_rows, write_archive
from tests.test_import_node import BASE, block, node_file


def parquet_files(archive: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in archive.rglob("*.parquet")}


def feed_archive(root: Path) -> Path:
    """An archive as the recorder leaves it, before the marker existed: no seq-space file."""
    write_archive(root, payload_rows([b"feed"] * 20, start_seq=1_500_000_000))
    return root


def test_import_node_into_a_feed_archive_is_refused(tmp_path: Path) -> None:
    archive = feed_archive(tmp_path / "archive")
    before = parquet_files(archive)
    result = replica("import-node", node_file(tmp_path / "node", BASE, 10), archive)
    assert result.returncode == 2
    assert result.stderr == (
        f"replica: error: {archive} holds seqs that are feed commands; replica import-node "
        "writes node block heights, which would mix two unrelated seq spaces: use another "
        "archive\n"
    )
    assert parquet_files(archive) == before
    assert not (archive / MARKER).exists()  # a refusal writes nothing


def test_record_into_a_node_archive_is_refused_before_connecting(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    import_node([node_file(tmp_path / "node", BASE, 10)], archive)
    assert (archive / MARKER).read_text() == "node\n"
    before = parquet_files(archive)
    result = replica("record", "ws://127.0.0.1:9/", archive, "--duration", "5s")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line == (
        f"replica: error: {archive} holds seqs that are node block heights; replica record "
        "writes feed commands, which would mix two unrelated seq spaces: use another archive"
    )
    assert json.loads(result.stdout)["exit_code"] == 2
    assert parquet_files(archive) == before


def test_a_legacy_node_archive_is_known_by_its_segments_metadata(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    import_node([node_file(tmp_path / "node", BASE, 10)], archive)
    (archive / MARKER).unlink()
    summary = import_node([node_file(tmp_path / "node", BASE + 10, 10)], archive)
    assert summary.imported == 10
    assert (archive / MARKER).read_text() == "node\n"


def test_an_archive_holding_both_kinds_is_refused_and_verify_says_why(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    import_node([node_file(tmp_path / "node", BASE, 10)], archive)
    (archive / MARKER).unlink()
    feed_archive(archive)  # what an import-node into a feed archive used to do
    before = parquet_files(archive)
    result = replica("import-node", node_file(tmp_path / "node", BASE + 10, 5), archive)
    assert result.returncode == 2
    assert "holds both feed segments" in result.stderr
    assert result.stderr.count("\n") == 1
    assert parquet_files(archive) == before
    assert any("holds both feed segments" in p for p in verify(archive).problems)


def test_completeness_of_a_mixed_archive_stays_within_0_and_100(tmp_path: Path) -> None:
    """What the old import made of a feed archive: 803.8% and negative missing."""
    archive = tmp_path / "archive"
    write_archive(archive, payload_rows([b"feed"] * 30, 1_500_000_000, START_TS_MS - 86_400_000))
    import_node([node_file(tmp_path / "node", BASE, 10)], tmp_path / "node-archive")
    for path in ArchiveLayout(tmp_path / "node-archive").segments():
        target = archive / path.path.relative_to(tmp_path / "node-archive")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.path.read_bytes())
    result = replica(
        "sql",
        archive,
        "SELECT recorded, missing, percent_complete FROM completeness",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["missing"] >= 0
        assert 0 <= row["percent_complete"] <= 100


def renamed(directory: Path, height: int, blocks_of: int, count: int) -> Path:
    """A file named ``height`` holding the blocks of another height: a renamed file."""
    source = node_file(directory.parent / "elsewhere", blocks_of, count)
    target = directory / str(height)
    target.write_bytes(source.read_bytes())
    return target


def test_a_renamed_file_is_imported_and_reported_by_file_and_line(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node_file(node, BASE, 10)
    wrong = renamed(node, BASE + 10, BASE - 20, 10)  # its blocks are 10 heights earlier
    node_file(node, BASE + 20, 10)
    archive = tmp_path / "archive"
    result = replica("import-node", node, archive)
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2  # the files after it rise again from its blocks
    assert warnings[0].startswith(
        f"replica: warning: {wrong}:1: block {BASE + 11} has round {BASE - 19}, not above "
        f"round {BASE + 10} of block {BASE + 10} ({node / str(BASE)}:10)"
    )
    assert warnings[1].startswith(f"replica: warning: {wrong}:1: block {BASE + 11} has time ")
    assert "30 blocks imported" in result.stdout
    checked = replica("verify", archive)
    assert checked.returncode == 1
    assert f"seq {BASE + 11}: block {BASE + 11} has round {BASE - 19}" in checked.stdout


def test_blocks_in_order_raise_no_warning_and_verify_passes(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node_file(node, BASE, 10)
    node_file(node, BASE + 20, 10)  # a hole between: rounds still rise
    archive = tmp_path / "archive"
    summary = import_node([node], archive)
    assert summary.warnings == []
    assert verify(archive).ok


def test_a_time_going_backwards_alone_is_reported(tmp_path: Path) -> None:
    node = tmp_path / "node"
    lines = [block(seq) for seq in range(BASE + 1, BASE + 4)]
    early = json.loads(lines[0])
    late = json.loads(lines[2])
    late["abci_block"]["time"] = early["abci_block"]["time"]  # same round order, time back
    lines[2] = json.dumps(late).encode()
    node.mkdir()
    (node / str(BASE)).write_bytes(b"".join(line + b"\n" for line in lines))
    summary = import_node([node], tmp_path / "archive")
    assert len(summary.warnings) == 1
    assert summary.warnings[0].startswith(f"{node / str(BASE)}:3: block {BASE + 3} has time ")
    assert "before" in summary.warnings[0]


def test_verify_of_a_feed_archive_reads_no_blocks(tmp_path: Path) -> None:
    """Feed payloads are not node blocks: no order check applies."""
    archive = feed_archive(tmp_path / "archive")
    assert verify(archive).ok


@pytest.mark.parametrize("text", ["", "both\n"])
def test_a_damaged_marker_is_one_line(tmp_path: Path, text: str) -> None:
    archive = feed_archive(tmp_path / "archive")
    (archive / MARKER).write_text(text)
    result = replica("import-node", node_file(tmp_path / "node", BASE, 3), archive)
    assert result.returncode == 1
    assert result.stderr.startswith(f"replica: error: {archive / MARKER} holds ")
    assert result.stderr.count("\n") == 1


def test_completeness_of_overlapping_files_stays_within_0_and_100(tmp_path: Path) -> None:
    """Two files holding the same seqs (a verify problem) count them once at most. The twin's
    name overlaps the segment's without lying inside it: a file named inside a larger one is
    superseded, and no reader reads it (``covering``)."""
    archive = feed_archive(tmp_path / "archive")
    [segment] = ArchiveLayout(archive).segments()
    first, last = segment.first_seq + 1, segment.last_seq + 1
    twin = segment.path.with_name(f"{first:020d}-{last:020d}.parquet")
    twin.write_bytes(segment.path.read_bytes())
    with connect(archive) as db:
        [(recorded, missing, percent)] = db.sql(
            "SELECT recorded, missing, percent_complete FROM completeness"
        ).fetchall()
    assert (recorded, missing, percent) == (40, 0, 100.0)
