"""``replica decode`` over real archives: what it writes, that DuckDB reads it with one glob,
that a second run changes nothing, and that it redoes exactly what is new, stale or half done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replica.decoder.archive import decode_archive
from replica.decoder.core import Decoder
from replica.schemas.archive import ArchiveLayout
from replica.schemas.decoded import SEGMENTS_TABLE, decoded_path
from replica.schemas.metadata import DECODER_KEY, RAW_SEGMENT_KEY, SOURCE_KEY

from tests.conftest import replica
from tests.rawarchive import feed_rows, write_archive, write_segment

FACT_TABLES = ("orders", "cancels", "fills", "liquidations", "funding", "oracle", "withdrawals")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    write_archive(root, feed_rows(), per_segment=1000)
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every decoded file's modification time and bytes."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted((root / "decoded").rglob("*.parquet"))
    }


def _sql(query: str) -> list[tuple]:
    return duckdb.sql(query).fetchall()


def test_every_command_lands_in_exactly_one_place_and_duckdb_reads_each_table(archive: Path):
    summary = decode_archive(archive)
    assert summary.decoded == summary.segments == 4 and not summary.failed
    glob = f"{archive}/decoded/{{}}/**/*.parquet"
    for table, rows in summary.rows.items():
        counted = _sql(f"SELECT count(*) FROM read_parquet('{glob.format(table)}')")[0][0]
        assert counted == rows, table
    # A protobuf command is one fact of one table, a node block one row of blocks (and maybe
    # facts of its actions): together, every raw seq once.
    blocks = f"SELECT seq FROM read_parquet('{glob.format('blocks')}')"
    facts = " UNION ALL ".join(
        f"SELECT DISTINCT seq FROM read_parquet('{glob.format(t)}') WHERE seq NOT IN ({blocks})"
        for t in (*FACT_TABLES, "deposits")
    )
    assert _sql(f"SELECT count(*), count(DISTINCT seq) FROM ({facts} UNION ALL {blocks})") == [
        (3000, 3000)
    ]
    assert "undecoded" not in summary.rows
    dates = _sql(
        f"SELECT DISTINCT date::VARCHAR FROM read_parquet('{glob.format('orders')}', "
        "hive_partitioning = true) ORDER BY 1"
    )
    assert dates == [("2026-11-20",), ("2026-11-21",)]


def test_node_and_protobuf_facts_share_one_table(archive: Path):
    decode_archive(archive)
    kinds = _sql(
        f"SELECT kind, count(*) FROM read_parquet('{archive}/decoded/orders/**/*.parquet') "
        "GROUP BY kind ORDER BY kind"
    )
    assert [kind for kind, _ in kinds] == ["modify", "order"]
    # The node's orders (from blocks) and the protobuf's carry the same typed columns.
    sources = _sql(
        f"SELECT count(*) FILTER (WHERE b.seq IS NULL), count(*) FILTER (WHERE b.seq IS NOT NULL) "
        f"FROM read_parquet('{archive}/decoded/orders/**/*.parquet') o "
        "LEFT JOIN (SELECT DISTINCT seq FROM "
        f"read_parquet('{archive}/decoded/blocks/**/*.parquet')) b "
        "USING (seq) WHERE o.px > 0 AND o.user LIKE '0x%'"
    )
    assert all(count > 0 for count in sources[0])


def test_second_run_changes_nothing(archive: Path):
    decode_archive(archive)
    before = _snapshot(archive)
    summary = decode_archive(archive)
    assert summary.decoded == 0 and summary.segments == 4
    assert _snapshot(archive) == before


def test_only_new_segments_are_decoded(archive: Path):
    decode_archive(archive)
    before = _snapshot(archive)
    rows = feed_rows()
    later = [dict(r, seq=r["seq"] + 10_000, ts_ms=r["ts_ms"] + 7_200_000) for r in rows[:50]]
    segment = write_segment(archive, later)
    summary = decode_archive(archive)
    assert summary.decoded == 1 and summary.segments == 5
    after = _snapshot(archive)
    assert {k: v for k, v in after.items() if k in before} == before
    assert decoded_path(archive, SEGMENTS_TABLE, segment).exists()


def test_an_older_decoders_output_is_replaced_and_its_leftovers_removed(archive: Path):
    segments = decode_archive(archive) and sorted((archive / "raw").rglob("*.parquet"))
    first = segments[0]
    marker = archive / "decoded" / SEGMENTS_TABLE / first.parent.parent.name / first.name
    old = pq.read_table(marker)
    pq.write_table(old.replace_schema_metadata({DECODER_KEY: b"0+older"}), marker)
    leftover = archive / "decoded" / "retired_table" / first.parent.parent.name / first.name
    leftover.parent.mkdir(parents=True)
    pq.write_table(pa.table({"seq": [1]}), leftover)
    summary = decode_archive(archive)
    assert summary.decoded == 1
    assert not leftover.exists()
    assert pq.read_schema(marker).metadata[DECODER_KEY] == Decoder().version.encode()
    for path in (archive / "decoded").rglob(first.name):
        assert pq.read_schema(path).metadata[DECODER_KEY] == Decoder().version.encode()


def test_decoded_files_name_their_raw_segment_under_a_key_of_their_own(archive: Path):
    """replica.source means the feed in raw files; a decoded file's raw segment has its own key."""
    decode_archive(archive)
    for segment in ArchiveLayout(archive).segments():
        size_and_name = f"{segment.path.stat().st_size}:{segment.path.name}".encode()
        for path in (archive / "decoded").rglob(segment.path.name):
            metadata = pq.read_schema(path).metadata
            assert metadata[RAW_SEGMENT_KEY] == size_and_name and SOURCE_KEY not in metadata


def test_decoded_files_that_name_their_raw_segment_the_old_way_are_decoded_again(archive: Path):
    decode_archive(archive)
    before = {k: v[1] for k, v in _snapshot(archive).items()}
    segment = ArchiveLayout(archive).segments()[0]
    marker = decoded_path(archive, SEGMENTS_TABLE, segment)
    metadata = pq.read_schema(marker).metadata
    old_layout = {DECODER_KEY: metadata[DECODER_KEY], SOURCE_KEY: metadata[RAW_SEGMENT_KEY]}
    pq.write_table(pq.read_table(marker).replace_schema_metadata(old_layout), marker)
    assert decode_archive(archive).decoded == 1
    assert {k: v[1] for k, v in _snapshot(archive).items()} == before


def test_a_run_killed_before_its_marker_is_redone_with_the_same_result(archive: Path):
    decode_archive(archive)
    before = {k: v[1] for k, v in _snapshot(archive).items()}
    for marker in (archive / "decoded" / SEGMENTS_TABLE).rglob("*.parquet"):
        marker.unlink()
        break
    assert decode_archive(archive).decoded == 1
    assert {k: v[1] for k, v in _snapshot(archive).items()} == before


def test_parallel_jobs_write_the_same_files_as_one(tmp_path: Path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    for root in (serial, parallel):
        write_archive(root, feed_rows(), per_segment=700)
    decode_archive(serial)
    summary = decode_archive(parallel, jobs=2)
    assert summary.decoded == 5 and not summary.failed

    def contents(root: Path) -> dict[str, pa.Table]:
        return {
            str(p.relative_to(root)): pq.read_table(p)
            for p in sorted((root / "decoded").rglob("*.parquet"))
        }

    assert contents(serial) == contents(parallel)


def test_cli_summarises_in_cron_and_a_broken_segment_fails_alone(archive: Path):
    broken = archive / "raw" / "date=2026-11-21" / "hour=05"
    broken.mkdir(parents=True)
    (broken / f"{'9' * 19}0-{'9' * 20}.parquet").write_bytes(b"not parquet at all")
    result = replica("decode", archive)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert (
        len(errors) == 1 and "replica: error:" in errors[0] and "99999999999999999990" in errors[0]
    )
    assert result.stdout.startswith("decoded 4 of 5 segments (0 already up to date, 1 failed)")
    assert "orders" in result.stdout and "\r" not in result.stderr  # no progress bar in cron
    again = replica("decode", archive)
    assert again.returncode == 1 and "decoded 0 of 5 segments (4 already up to date" in again.stdout
    quiet = replica("decode", archive, "--quiet")
    assert quiet.returncode == 1 and quiet.stdout == "" and quiet.stderr == result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schema", "{schema}"], "--schema and --message go together"),
        (["--message", "x.Y"], "--schema and --message go together"),
        (["--schema", "{schema}", "--message", "x.Y"], "not a readable FileDescriptorSet"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_cli_usage_errors_are_one_line_and_touch_nothing(
    archive: Path, tmp_path: Path, args: list[str], message: str
):
    schema = tmp_path / "not-a-descriptor-set.pb"
    schema.write_bytes(b"\xff\xff\xff")
    result = replica("decode", archive, *(a.format(schema=schema) for a in args))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (archive / "decoded").exists()


def test_progress_bar_only_on_a_terminal(archive: Path):
    """A pseudo-terminal on stderr gets the bar; --quiet silences it even there."""
    import pty

    def stderr_on_tty(*flags: str) -> bytes:
        leader, follower = pty.openpty()
        with subprocess.Popen(
            [sys.executable, "-m", "replica", "decode", str(archive), *flags],
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env={**os.environ, "COLUMNS": "80"},
        ) as process:
            os.close(follower)
            output = b""
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            assert process.wait(timeout=60) == 0
        os.close(leader)
        return output

    assert b"decoding" in stderr_on_tty()
    for path in (archive / "decoded" / SEGMENTS_TABLE).rglob("*.parquet"):
        path.unlink()
    assert stderr_on_tty("--quiet") == b""


def test_a_segment_decoded_in_small_batches_gives_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Memory is bounded by a batch of rows: outputs are written a batch at a time, and must
    not depend on where the batches fall."""
    whole, batched = tmp_path / "whole", tmp_path / "batched"
    for root in (whole, batched):
        write_archive(root, feed_rows(), per_segment=3000)
    decode_archive(whole)
    monkeypatch.setattr("replica.decoder.archive.raw_batch_rows", lambda metadata: 97)
    decode_archive(batched)
    for path in sorted((whole / "decoded").rglob("*.parquet")):
        twin = batched / path.relative_to(whole)
        assert pq.read_table(twin) == pq.read_table(path), path.relative_to(whole)
    assert not list(batched.rglob("*.tmp"))


def test_temporary_files_of_a_killed_decode_are_removed_and_a_running_ones_kept(archive: Path):
    decode_archive(archive)
    table_dir = next((archive / "decoded" / "orders").iterdir())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    abandoned = table_dir / f".x.parquet.{int(dead.stdout)}.tmp"
    running = table_dir / f".y.parquet.{os.getpid()}.tmp"
    for path in (abandoned, running):
        path.write_bytes(b"half a file")
    decode_archive(archive)
    assert not abandoned.exists() and running.exists()
