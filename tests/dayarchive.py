"""Archives of several whole UTC days, a few small segments per hour, for the tests of work on
one day (compact, verify and stats with --date or --since): and a way to see which directories
and files a run of such work lists and opens."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from replica.schemas.archive import GAP_SCHEMA, ArchiveLayout
from replica.schemas.files import publish_parquet

from tests.rawarchive import write_segment

FIRST_DAY = date(2026, 11, 10)
DAYS = [FIRST_DAY + timedelta(days=i) for i in range(5)]
HOURS = (0, 7, 23)  # hours with segments, each day
PER_HOUR = 3  # segments per hour
PER_SEGMENT = 4  # rows per segment
AFTER = datetime(2026, 11, 20, tzinfo=UTC)  # every day closed


def build_days(root: Path, days: list[date] = DAYS, skip: set[int] = frozenset()) -> Path:
    """Segments for each of ``days``, seqs following on from one day to the next, less the
    seqs in ``skip`` (holes, with no gap record)."""
    seq = 1
    for day in days:
        midnight = int(datetime.combine(day, datetime.min.time(), UTC).timestamp() * 1000)
        for hour in HOURS:
            for _ in range(PER_HOUR):
                rows = []
                for i in range(PER_SEGMENT):
                    ts = midnight + hour * 3_600_000 + (seq % 3000) * 1000 + i
                    if seq not in skip:
                        rows.append(
                            {"seq": seq, "ts_ms": ts, "ingest_ts_us": ts * 1000 + 300,
                             "publish_ts_us": ts * 1000 + 320, "recv_ts_us": ts * 1000 + 500,
                             "raw": b"payload %d" % seq}
                        )  # fmt: skip
                    seq += 1
                if rows:
                    write_segment(root, rows)
    return root


def day_files(root: Path, day: date) -> list[Path]:
    return sorted((root / "raw" / f"date={day}").rglob("*.parquet"))


def spoil(path: Path) -> None:
    """Garbage of the file's own size in place of its bytes: unreadable, yet the same listing."""
    path.write_bytes(b"\xff" * path.stat().st_size)


_WATCH = """
import json, sys
from pathlib import Path
seen = []
def hook(event, args):
    if event in ("os.scandir", "os.listdir", "open") and args and args[0] is not None:
        seen.append(str(args[0]))
{setup}
sys.addaudithook(hook)
{call}
sys.addaudithook(lambda *a: None)
print(json.dumps(seen))
"""


def touched(setup: str, call: str) -> list[str]:
    """Every directory listed and file opened by Python while ``call`` runs (after ``setup``),
    in a process of its own: audit hooks cannot be removed."""
    script = _WATCH.format(setup=setup, call=call)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def other_days(paths: list[str], root: Path, allowed: set[date]) -> list[str]:
    """The paths under raw/ days other than ``allowed``."""
    raw = str(ArchiveLayout(root).raw_dir)
    return [
        p for p in paths
        if p.startswith(raw + "/date=") and not any(f"date={d}" in p for d in allowed)
    ]  # fmt: skip


def write_gap(root: Path, day: date, low: int, high: int) -> None:
    """A gap record for seqs low-high, filed under ``day`` as a recorder would file it."""
    row = {"from_seq": low, "to_seq": high, "missing": high - low + 1, "cause": "reconnect",
           "detected_ts_us": 1, "before_ts_ms": None, "after_ts_ms": 1}  # fmt: skip
    path = root / "gaps" / f"date={day}" / f"gap-{low}.parquet"
    publish_parquet(pa.Table.from_pylist([row], schema=GAP_SCHEMA), path, compression="zstd")


def first_seq(root: Path, day: date) -> int:
    return ArchiveLayout(root).segments(day)[0].first_seq
