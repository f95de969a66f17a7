"""Page checksums: every Parquet file replica writes carries a CRC of each page, and ``verify``
checks them, so a bit flipped on disk inside a page is reported rather than replayed. Files an
older replica wrote without them are a note, not a problem.
"""

from __future__ import annotations

import random
import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replica.decoder.archive import decode_archive
from replica.schemas.archive import RAW_SCHEMA, RAW_WRITE_OPTIONS, ArchiveLayout
from replica.schemas.decoded import DECODED_DIR, SEGMENTS_TABLE

from replica.maintenance.checksums import has_page_checksums
from replica.maintenance.compact import compact
from replica.maintenance.heal import heal
from replica.maintenance.node_import import import_node
from replica.maintenance.verify import verify
from tests.conftest import reached, record
from tests.conftest import replica as run_replica
from tests.feedserver import ScriptedFeed, Send
from tests.parquetpages import Page, pages
from tests.rawarchive import feed_rows, write_segment
from tests.replayarchives import FEED_LAST_SEQ, FEED_LINES
from tests.test_import_node import BASE, node_file

LATER = datetime(2026, 12, 1, tzinfo=UTC)  # the fixture feed's days are closed
FLIPS = 50


def flip(path: Path, position: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(data)


def test_every_file_replica_writes_has_page_checksums(tmp_path: Path):
    """Recorder (raw, gaps, quarantine), decode, compaction (raw and decoded), heal and node
    import."""
    archive = tmp_path / "archive"
    frames = (*FEED_LINES[:10], "not a frame", *FEED_LINES[10:])
    with ScriptedFeed([Send(frames)]) as feed:
        record(feed.url, archive, reached(FEED_LAST_SEQ), segment_rows=500)
    decode_archive(archive)
    summary = compact(archive, now=LATER)
    assert sum(day.segments_in for day in summary.days) > 0
    healed = tmp_path / "healed"
    shutil.copytree(archive, healed)
    hole = ArchiveLayout(healed).segments()[1].path
    hole.unlink()
    assert heal(healed, [archive]).added > 0
    node_archive = tmp_path / "node-archive"
    assert import_node([node_file(tmp_path / "node", BASE, 20)], node_archive).segments == 1
    written = sorted(
        path for root in (archive, healed, node_archive) for path in root.rglob("*.parquet")
    )
    for table in ("raw", "gaps", "quarantine", f"{DECODED_DIR}/{SEGMENTS_TABLE}"):
        assert any(path.is_relative_to(archive / table) for path in written), table
    assert any(path.is_relative_to(healed / "heals") for path in written)
    assert any(path.is_relative_to(hole.parent) for path in written)
    for path in written:
        assert has_page_checksums(path, pq.read_metadata(path)), path
    for root in (archive, healed, node_archive):
        report = verify(root)
        assert report.ok and report.unchecksummed == 0 and not report.notes, report


@pytest.fixture
def segment(tmp_path: Path) -> Path:
    """One raw segment of the fixture feed's first 1500 commands, in row groups of 500."""
    return write_segment(tmp_path / "archive", feed_rows()[:1500], row_group_rows=500).path


def flips(page_list: list[Page], count: int) -> list[tuple[int, int]]:
    """``count`` positions spread over the bytes of the pages, headers and data, each with a
    bit to flip; seeded, so every run damages the same bits."""
    positions = [p for page in page_list for p in (*page.header, *page.data)]
    rng = random.Random(20261130)
    step = len(positions) // count
    return [(positions[i * step + rng.randrange(step)], rng.randrange(8)) for i in range(count)]


def test_verify_reports_every_bit_flipped_inside_a_page(segment: Path):
    """A flip in a page's data breaks its CRC. The CRC does not cover the page's header; a flip
    there breaks reading, or hits a field readers ignore (page statistics, level encodings of
    a column without nulls) and the file reads exactly as before."""
    archive = segment.parent.parent.parent.parent
    original = pq.read_table(segment)
    page_list = pages(segment)
    in_data = {p for page in page_list for p in page.data}
    caught = harmless = 0
    for position, bit in flips(page_list, FLIPS):
        flip(segment, position, bit)
        report = verify(archive)
        if not report.ok:
            assert any(str(segment) in problem for problem in report.problems), report.problems
            caught += 1
        else:
            assert position not in in_data, f"flip at byte {position} bit {bit} went unnoticed"
            assert pq.read_table(segment).equals(original), f"byte {position} changed the rows"
            harmless += 1
        flip(segment, position, bit)
    assert caught + harmless == FLIPS and verify(archive).ok


def footer_of(path: Path) -> range:
    """The bytes after the last page: the footer (its Thrift metadata, length and magic)."""
    return range(pages(path)[-1].data.stop, path.stat().st_size)


def bounds(path: Path) -> list[tuple[int, int] | None]:
    """Each row group's footer min and max of each column, None where the footer has none."""
    metadata = pq.read_metadata(path)
    found = []
    for index in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            stats = metadata.row_group(index).column(column).statistics
            found.append(
                (stats.min, stats.max) if stats is not None and stats.has_min_max else None
            )
    return found


def test_verify_reports_footer_statistics_that_no_longer_match_the_rows(segment: Path):
    """The footer's min and max are how readers skip row groups: a max of seq one too low makes
    ``replay --from-seq <that seq>`` skip the row group holding it, and no page CRC covers the
    footer. Both copies of the max (Parquet's old and new field) are damaged alike."""
    archive = segment.parent.parent.parent.parent
    true_max = pq.read_metadata(segment).row_group(1).column(0).statistics.max
    data = segment.read_bytes()
    footer = footer_of(segment)
    value = struct.pack("<q", true_max)
    positions = [p for p in footer if data[p : p + 8] == value]
    assert len(positions) == 2 and true_max % 2 == 1
    for position in positions:
        flip(segment, position, 0)
    assert pq.read_metadata(segment).row_group(1).column(0).statistics.max == true_max - 1
    [problem] = verify(archive).problems
    assert problem == (
        f"{segment}: the footer is damaged: the min and max of seq in row group 1 are not its "
        "rows', and readers that skip row groups by them would miss rows"
    )


def test_verify_reports_every_bit_flipped_in_the_footer_that_readers_would_act_on(segment: Path):
    """A flip in the footer is reported, or leaves the rows and every min and max that readers
    skip row groups by as they were (it may drop some: readers then read those row groups)."""
    archive = segment.parent.parent.parent.parent
    original, original_bounds = pq.read_table(segment), bounds(segment)
    positions = footer_of(segment)
    rng = random.Random(20261130)
    step = len(positions) // FLIPS
    for i in range(FLIPS):
        position, bit = positions[i * step + rng.randrange(step)], rng.randrange(8)
        flip(segment, position, bit)
        if verify(archive).ok:
            assert pq.read_table(segment).equals(original), f"byte {position} changed the rows"
            for n, (before, after) in enumerate(zip(original_bounds, bounds(segment), strict=True)):
                assert after in (before, None), f"byte {position} changed bounds number {n}"
        flip(segment, position, bit)


def test_cli_verify_names_the_corrupt_segment_and_exits_1(segment: Path):
    archive = segment.parent.parent.parent.parent
    last = pages(segment)[-1]  # the last page of the payload column
    flip(segment, last.data[len(last.data) // 2], 3)
    result = run_replica("verify", archive)
    assert result.returncode == 1, result.stdout + result.stderr
    [problem] = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert str(segment) in problem and "CRC checksum verification failed" in problem
    assert result.stderr == ""


def test_a_corrupt_decoded_file_is_reported_with_how_to_write_it_again(tmp_path: Path):
    archive = tmp_path / "archive"
    write_segment(archive, feed_rows()[:1500])
    decode_archive(archive)
    [segment] = ArchiveLayout(archive).segments()
    date = segment.path.parent.parent.name
    orders = archive / DECODED_DIR / "orders" / date / segment.path.name
    before = pq.read_table(orders)
    page = pages(orders)[-1]
    flip(orders, page.data[len(page.data) // 2], 5)
    [problem] = verify(archive).problems
    marker = archive / DECODED_DIR / SEGMENTS_TABLE / date / segment.path.name
    assert problem.startswith(f"{orders}: does not read: ")
    assert f"delete {marker} and run 'replica decode'" in problem
    marker.unlink()
    decode_archive(archive)
    assert verify(archive).ok and pq.read_table(orders).equals(before)


def test_files_without_checksums_are_a_note_not_a_problem(tmp_path: Path):
    """As an older replica wrote them: verify still reads them, and says what it cannot see."""
    archive = tmp_path / "archive"
    segment = write_segment(archive, feed_rows()[:100])
    table = pa.Table.from_pylist(feed_rows()[100:200], schema=RAW_SCHEMA)
    old = segment.path.with_name(f"{100 + 482_910_000:020d}-{199 + 482_910_000:020d}.parquet")
    pq.write_table(table, old, **RAW_WRITE_OPTIONS)
    assert not has_page_checksums(old, pq.read_metadata(old))
    result = run_replica("verify", archive)
    assert result.returncode == 0, result.stdout
    assert (
        "note: 1 files have no page checksums (an older replica wrote them): damage inside them "
        "is found only where it breaks decompression or decoding"
    ) in result.stdout.splitlines()
