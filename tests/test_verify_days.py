"""``verify --date`` and ``--since``: the nightly check of yesterday reads yesterday's files (and
the names of its neighbours' segments), finds what the full run finds in that day, including
seqs missing across midnight; and raw segments are read a row group at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from replica.schemas.archive import RAW_SCHEMA, RAW_WRITE_OPTIONS, ArchiveLayout

from replica.maintenance.verify import verify
from tests.conftest import replica
from tests.dayarchive import (
    DAYS,
    build_days,
    day_files,
    first_seq,
    other_days,
    spoil,
    touched,
    write_gap,
)
from tests.rawarchive import payload_rows, write_segment


def test_a_dated_run_finds_what_the_full_run_finds_in_that_day(tmp_path: Path):
    hole = 80  # a seq inside DAYS[2] (each day holds 36)
    archive = build_days(tmp_path / "archive", skip={hole})
    full, dated = verify(archive), verify(archive, [DAYS[2]])
    assert (
        full.problems
        == dated.problems
        == [f"seqs {hole}-{hole} are missing and no gap record says so"]
    )
    assert verify(archive, [DAYS[0]]).ok and verify(archive, [DAYS[4]]).ok
    assert verify(archive, DAYS[2:]).problems == full.problems
    assert (dated.segments, dated.rows, dated.missing) == (9, 35, 1)
    write_gap(archive, DAYS[2], hole, hole)
    assert verify(archive).ok and verify(archive, [DAYS[2]]).ok


def test_seqs_missing_across_midnight_are_found_from_either_day(tmp_path: Path):
    archive = build_days(tmp_path / "archive")
    boundary = first_seq(archive, DAYS[3])
    for path in day_files(archive, DAYS[3])[:1]:
        path.unlink()  # the first segment of DAYS[3]: a hole from DAYS[2]'s last seq on
    expected = [f"seqs {boundary}-{boundary + 3} are missing and no gap record says so"]
    for days in ([DAYS[2]], [DAYS[3]], DAYS[3:], None):
        assert verify(archive, days).problems == expected, days
    assert verify(archive, [DAYS[1]]).ok
    write_gap(archive, DAYS[3], boundary, boundary + 3)
    assert verify(archive, [DAYS[2]]).ok and verify(archive, [DAYS[3]]).ok


def test_a_segment_of_the_next_day_overlapping_the_days_last_is_found_from_either(
    tmp_path: Path,
):
    archive = build_days(tmp_path / "archive")
    last = ArchiveLayout(archive).segments(DAYS[2])[-1]
    rows = pq.read_table(last.path).to_pylist()[-2:]
    ts = int(pq.read_table(day_files(archive, DAYS[3])[0]).column("ts_ms")[0].as_py())
    write_segment(archive, [{**row, "ts_ms": ts + i} for i, row in enumerate(rows)])
    for days in ([DAYS[2]], [DAYS[3]], None):
        assert any("overlap" in problem for problem in verify(archive, days).problems), days
    assert verify(archive, [DAYS[1]]).ok and verify(archive, [DAYS[4]]).ok


def test_a_dated_run_reads_only_its_day_and_lists_only_its_neighbours(tmp_path: Path):
    archive = build_days(tmp_path / "archive")
    for day in (DAYS[0], DAYS[1], DAYS[3]):
        for path in day_files(archive, day):
            spoil(path)
    assert not verify(archive).ok
    assert verify(archive, [DAYS[2]]).ok
    paths = touched(
        "from replica.maintenance.verify import verify\nfrom datetime import date",
        f"verify(Path({str(archive)!r}), [date.fromisoformat({DAYS[2].isoformat()!r})])",
    )
    assert other_days(paths, archive, {DAYS[1], DAYS[2], DAYS[3]}) == []


def test_cli_date_and_since(tmp_path: Path):
    archive = build_days(tmp_path / "archive")
    spoil(day_files(archive, DAYS[0])[0])
    assert replica("verify", archive).returncode == 1
    dated = replica("verify", archive, "--date", DAYS[2].isoformat())
    assert dated.returncode == 0, dated.stderr
    assert dated.stdout.splitlines()[-1].startswith("9 segments, 36 commands, seqs 73-108")
    assert replica("verify", archive, "--since", DAYS[1].isoformat()).returncode == 0
    empty = replica("verify", archive, "--date", "2027-01-01")
    assert empty.returncode == 0 and "note: the days asked for have no raw segments" in empty.stdout
    both = replica("verify", archive, "--date", DAYS[1].isoformat(), "--since", DAYS[1].isoformat())
    assert both.returncode == 2 and "--date and --since" in both.stderr


_PEAK = """
import sys
from pathlib import Path
import pyarrow as pa
from replica.maintenance.verify import verify
report = verify(Path(sys.argv[1]))
assert report.ok, report.problems
print(pa.default_memory_pool().max_memory())
"""


def test_verify_holds_one_row_group_of_a_segment_at_a_time(tmp_path: Path):
    """Arrow's peak allocation while verifying the same 8 MB of incompressible payloads as one
    row group and as 32: it follows the row group, not the file."""
    rows = payload_rows([os.urandom(1024) for _ in range(8192)], start_seq=1)
    table = pa.Table.from_pylist(rows, schema=RAW_SCHEMA)
    peaks = {}
    for groups in (1, 32):
        archive = tmp_path / f"archive{groups}"
        path = ArchiveLayout(archive).segment_path(1, len(rows), rows[0]["ts_ms"] // 3_600_000)
        path.parent.mkdir(parents=True)
        pq.write_table(table, path, **{**RAW_WRITE_OPTIONS, "row_group_size": len(rows) // groups})
        assert pq.read_metadata(path).num_row_groups == groups
        done = subprocess.run(
            [sys.executable, "-c", _PEAK, str(archive)], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        peaks[groups] = int(done.stdout)
    assert peaks[1] >= len(rows) * 1024  # the whole file's payloads at once
    assert peaks[32] * 8 < peaks[1]


_PEAK_IN_BATCHES = """
import sys
from pathlib import Path
import pyarrow as pa
from replica.maintenance import verify_segment
from replica.maintenance.verify import verify
verify_segment.PAYLOAD_BATCH_BYTES = 1024 * 1024
report = verify(Path(sys.argv[1]))
assert report.ok, report.problems
print(pa.default_memory_pool().max_memory())
"""


def test_verify_reads_a_row_groups_payloads_a_batch_at_a_time(tmp_path: Path):
    """A row group of large payloads is large (131,072 of a kilobyte are 128 MiB): Arrow's peak
    while verifying one of 16 MB, in batches of 1 MiB, follows the batch (and a page), not the
    row group."""
    rows = payload_rows([os.urandom(1024) for _ in range(16384)], start_seq=1)
    archive = tmp_path / "archive"
    path = ArchiveLayout(archive).segment_path(1, len(rows), rows[-1]["ts_ms"] // 3_600_000)
    path.parent.mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=RAW_SCHEMA)
    pq.write_table(table, path, **{**RAW_WRITE_OPTIONS, "row_group_size": len(rows)})
    assert pq.read_metadata(path).num_row_groups == 1
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_IN_BATCHES, str(archive)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) * 2 < len(rows) * 1024
