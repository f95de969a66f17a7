"""Every kind of archive file, cut short, under every command that may read it.

A user must see one line naming the damaged file and a non-zero exit, or a clean success where
the command has no reason to read that file; never a traceback. Nothing already archived is lost
or rewritten by the attempt. Each case runs the real ``replica`` command as a subprocess on its
own copy of an archive built once for the module; the cases run a few at a time, since each is
mostly interpreter start-up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replica.decoder.archive import decode_archive
from replica.recorder.frames import Command
from replica.recorder.spool import SpoolWriter
from replica.schemas.archive import QUARANTINE_SCHEMA, ArchiveLayout

from replica.maintenance.node_import import import_node
from tests.conftest import raw_rows
from tests.rawarchive import feed_rows, write_archive
from tests.replayarchives import FEED_GAP, damage_row_group, write_gap_records
from tests.test_import_node import BASE, node_file

START_MS = 1_795_204_800_000  # 2026-11-20T20:00Z: one closed day, two hours
DAY = "date=2026-11-20"
SQL = (
    "SELECT (SELECT count(*) FROM raw_cmds), (SELECT count(*) FROM gaps), "
    "(SELECT count(*) FROM quarantine), (SELECT count(*) FROM orders)"
)
COMMANDS = {
    "verify": ["verify", "{a}"],
    "gaps": ["gaps", "{a}"],
    "stats": ["stats", "{a}"],
    "decode": ["decode", "--quiet", "{a}"],
    "compact": ["compact", "{a}"],
    "sql": ["sql", "{a}", SQL],
    "replay": ["replay", "--digest", "{a}"],
}
# Which commands read each kind of file (and must fail naming it when it is damaged); the
# others must succeed. A torn spool is what a crash leaves, read as far as it is intact; a
# damaged decoded marker only makes decode redo its segment (verify reports it); compaction
# drops decoded files it cannot merge, for decode to redo.
READERS = {
    "raw": {"verify", "stats", "decode", "compact", "sql", "replay"},
    "gaps": {"verify", "gaps", "stats", "sql", "replay"},
    "quarantine": {"verify", "stats", "sql"},
    "decoded": {"verify", "stats", "sql"},
    "marker": {"verify"},
    "spool": set(),
    "journal": {"decode", "compact"},
}
# Derived files a successful run of these commands may rewrite or drop.
REWRITES = {"decode": ("decoded",), "compact": ("decoded", "raw")}


def _build_feed_archive(root: Path) -> Path:
    rows = feed_rows()
    for i, row in enumerate(rows):
        row["ts_ms"] = START_MS + 1_200 * i
    write_archive(root, rows, per_segment=500)
    write_gap_records(root, [(*FEED_GAP, "reconnect")])
    decode_archive(root)
    quarantined = {
        "recv_ts_us": START_MS * 1000,
        "kind": "text",
        "reason": "not JSON",
        "seq": None,
        "frame": "x",
        "frame_bytes": 1,
    }
    path = root / "quarantine" / DAY / "unit.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([quarantined], schema=QUARANTINE_SCHEMA), path)
    return root


def _build_node_archive(root: Path, files: Path) -> Path:
    import_node([node_file(files, BASE, 50), node_file(files, BASE + 100, 50)], root)
    return root


def _victim(root: Path, kind: str) -> Path:
    """The file of ``kind`` to damage in a copy of an archive (created for spool and journal,
    which a settled archive has none of)."""
    if kind == "raw":  # the last: DuckDB reads it for the query, not to define the view
        return ArchiveLayout(root).segments()[-1].path
    if kind == "raw-pages":  # its footer intact: only reading its pages finds the damage
        return ArchiveLayout(root).segments()[1].path
    if kind in ("gaps", "quarantine"):
        return sorted((root / kind).rglob("*.parquet"))[0]
    if kind in ("decoded", "marker"):
        table = "orders" if kind == "decoded" else "_segments"
        return sorted((root / "decoded" / table).rglob("*.parquet"))[0]
    if kind == "spool":
        spool = SpoolWriter(root / "spool")
        spool.open("unit", {"unit": "unit"})
        spool.append(
            "unit", [(1, Command(10**12 + i, START_MS, 1, 2, b"x" * 64)) for i in range(50)]
        )
        spool.close_all()
        return spool.path("unit")
    journal = root / ".compact" / f"{DAY}.json"
    journal.parent.mkdir()
    entry = {"live": f"raw/{DAY}", "staged": f".compact/{DAY}/raw", "retired": []}
    journal.write_text(json.dumps({"swaps": [entry]}))
    return journal


def _hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and path.name not in (".lock", ".maintenance.lock")
    }


class Outcome(NamedTuple):
    victim: Path
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]
    rows_before: list[dict]
    rows_after: list[dict] | None  # None when the raw segments no longer all read


def _run(base: Path, copy: Path, kind: str, args: list[str]) -> Outcome:
    shutil.copytree(base, copy)
    victim = _victim(copy, kind)
    compacts = args[0] == "compact" and not kind.startswith(
        "raw"
    )  # the one run that may rewrite raw files
    rows_before = raw_rows(copy) if compacts else []
    if kind == "raw-pages":
        damage_row_group(victim, 0)
    else:
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    before = _hashes(copy)
    result = subprocess.run(
        [sys.executable, "-m", "replica", *(arg.format(a=copy) for arg in args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows_after = raw_rows(copy) if compacts else None
    return Outcome(
        victim, result.returncode, result.stdout, result.stderr, before, _hashes(copy),
        rows_before, rows_after,
    )  # fmt: skip


CASES = [(kind, command) for kind in READERS for command in COMMANDS]
NODE_CASES = [("raw", "import-node"), ("gaps", "import-node")]
# A segment whose pages are damaged but whose footer reads: compaction finds it only as it
# merges, after it began building the day aside. DuckDB's message does not name the file.
PAGE_CASES = [("raw-pages", command) for command in ("verify", "decode", "compact", "replay")]
READERS["raw-pages"] = {"verify", "compact", "replay"}  # decode has it decoded already


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Outcome]:
    work = tmp_path_factory.mktemp("damaged")
    feed = _build_feed_archive(work / "feed")
    node = _build_node_archive(work / "node", work / "node-files")
    overlapping = node_file(work / "more-files", BASE + 90, 20)  # blocks 91-110
    jobs = {
        (kind, command): (feed, COMMANDS[command]) for kind, command in CASES + PAGE_CASES
    } | {
        (kind, command): (node, ["import-node", str(overlapping), "{a}"])
        for kind, command in NODE_CASES
    }  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        futures = {
            case: pool.submit(_run, base, work / f"{case[0]}-{case[1]}", case[0], args)
            for case, (base, args) in jobs.items()
        }
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("kind, command", CASES + NODE_CASES + PAGE_CASES)
def test_a_damaged_file_is_one_line_naming_it_or_not_read(
    outcomes: dict[tuple[str, str], Outcome], kind: str, command: str
) -> None:
    out = outcomes[(kind, command)]
    assert "Traceback" not in out.stderr, out.stderr
    reads = command == "import-node" or command in READERS[kind]
    if not reads:
        assert out.returncode == 0, out.stderr
    elif command == "verify":  # its report, one problem a line, on stdout
        assert out.returncode == 1
        assert [line for line in out.stdout.splitlines() if str(out.victim) in line]
        assert all(
            line.startswith(("problem: ", "note: ")) for line in out.stdout.splitlines()[:-1]
        )
    else:
        assert out.returncode != 0
        errors = [line for line in out.stderr.splitlines() if line.startswith("replica: error: ")]
        assert len(errors) == 1 and str(out.victim) in errors[0], out.stderr
        assert all(line.startswith("replica: ") for line in out.stderr.splitlines())
    if command == "compact" and kind != "journal":
        assert not [name for name in out.after if name.startswith(".compact/")], "staging left"
    rewritten = REWRITES.get(command, ()) if out.returncode == 0 else ()
    for name, digest in out.before.items():
        if name.split("/")[0] not in rewritten:
            assert out.after.get(name) == digest, f"{name} was lost or rewritten"
    if "raw" in rewritten:
        assert sorted(out.rows_after or [], key=lambda r: r["seq"]) == out.rows_before
