"""The README's shell examples, run exactly as printed.

Every ```sh block runs under ``bash`` with ``set -e -o pipefail``, in README order, in one
scratch directory where its paths exist: ``./archive`` recorded from the demo feed (and a copy
as ``./backup/archive``), a node's replica_cmds files under ``~/hl/data`` (HOME is the scratch
directory) and beside it, and a ``backtest`` stand-in on PATH that fails unless it reads
replayed frames. A block that cannot run
on one machine says why in ``<!-- not run: REASON -->`` just before it; any other shell fence
fails the test. The nightly check (check.sql as printed, the cron line and the systemd service's
commands) runs on archives whose yesterday is complete, then missing, with only ``/srv/replica``
and the install path of ``replica`` put in their place.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lz4.frame
import pytest

from fixtures.make_feed import START_TS_MS, node_block
from tests.rawarchive import payload_rows, write_archive
from tests.replayarchives import record_fixture_feed

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_RUN = re.compile(r"<!-- not run: (\S[^>]*?) -->")
SHELL_FENCES = {"sh", "bash", "shell", "console", "zsh"}
BLOCK_TIMEOUT_S = 120  # a guard against hanging, never a performance expectation
BIN = Path(sys.executable).parent  # where this environment installed `replica`
BACKTEST = """#!/bin/sh
# A stand-in for the reader's backtest: it must be fed replayed frames.
grep -c '"type":"replica_cmd"' >/dev/null
"""


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    language: str
    text: str
    not_run: str | None  # the reason given just before it, if any


def readme_blocks() -> list[Block]:
    blocks, lines = [], README.read_text(encoding="utf-8").splitlines()
    opened: tuple[int, str] | None = None
    for number, line in enumerate(lines, 1):
        if opened is None and line.startswith("```"):
            opened = (number, line[3:].strip())
        elif opened is not None and line.strip() == "```":
            start, language = opened
            before = next((t for t in reversed(lines[: start - 1]) if t.strip()), "")
            reason = NOT_RUN.fullmatch(before.strip())
            text = "\n".join(lines[start : number - 1]) + "\n"
            blocks.append(Block(start, language, text, reason[1] if reason else None))
            opened = None
    assert opened is None, f"README.md:{opened[0]}: a fence is never closed"
    return blocks


def block_of(language: str, containing: str) -> str:
    (text,) = [b.text for b in readme_blocks() if b.language == language and containing in b.text]
    return text


SH_BLOCKS = [block for block in readme_blocks() if block.language == "sh"]


def test_every_shell_example_is_an_sh_block_and_every_marker_gives_a_reason() -> None:
    blocks = readme_blocks()
    other = [f"README.md:{b.line}" for b in blocks if b.language in SHELL_FENCES - {"sh"}]
    assert not other, f"shell examples this test would not run: {other}"
    markers = README.read_text(encoding="utf-8").count("<!-- not run:")
    assert markers == sum(block.not_run is not None for block in blocks), (
        "a '<!-- not run: REASON -->' that is not just before a block, or gives no reason"
    )
    assert sum(block.not_run is None for block in SH_BLOCKS) >= 5


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory in which the README's paths exist."""
    root = tmp_path_factory.mktemp("readme")
    record_fixture_feed(root / "archive")
    shutil.copytree(root / "archive", root / "backup" / "archive")  # a second recorder's
    node_file(root / "home" / "hl" / "data" / "replica_cmds" / "5180000", 5_180_000)
    node_file(root / "5190000.lz4", 5_190_000)
    node_file(root / "5200000.lz4", 5_200_000)
    (root / "bin").mkdir()
    (root / "bin" / "backtest").write_text(BACKTEST)
    (root / "bin" / "backtest").chmod(0o755)
    return root


def node_file(path: Path, height: int, blocks: int = 5) -> None:
    """The file a node names ``height``, holding the next ``blocks`` blocks (LZ4 for .lz4)."""
    content = b"".join(
        node_block(random.Random(seq), START_TS_MS + 80 * (seq - 5_180_000), seq) + b"\n"
        for seq in range(height + 1, height + blocks + 1)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lz4.frame.compress(content) if path.suffix == ".lz4" else content)


def shell_env(root: Path) -> dict[str, str]:
    path = f"{root / 'bin'}:{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return {**os.environ, "PATH": path, "HOME": str(root / "home")}


@pytest.mark.parametrize("block", SH_BLOCKS, ids=[f"line{b.line}" for b in SH_BLOCKS])
def test_a_shell_block_runs_as_printed(scratch: Path, block: Block) -> None:
    if block.not_run is not None:
        pytest.skip(f"README.md:{block.line}: {block.not_run}")
    result = subprocess.run(
        ["bash", "-c", "set -e -o pipefail\n" + block.text],
        cwd=scratch,
        env=shell_env(scratch),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"README.md:{block.line} exited {result.returncode}:\n{block.text}\n"
        f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-2000:]}"
    )


# ---- the nightly check, as cron and systemd run it -------------------------------------------


def nightly_directory(root: Path, day: datetime) -> Path:
    """What /srv/replica holds: an archive of 50 consecutive seqs on ``day``, and check.sql."""
    start_ms = int(day.timestamp() * 1000) + 3_600_000
    write_archive(root / "archive", payload_rows([b"\x0a\x01x"] * 50, 1000, start_ms))
    check = block_of("sql", "-- check.sql")
    (root / "check.sql").write_text(check)
    return root


def yesterday() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1)


def cron_nightly(directory: Path) -> subprocess.CompletedProcess[str]:
    (line,) = [t for t in block_of("crontab", "CRON_TZ").splitlines() if "replica decode" in t]
    command = line.split(None, 5)[5].replace("/srv/replica", str(directory))
    return subprocess.run(
        ["sh", "-c", command],
        env=shell_env(directory),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )


def systemd_nightly(directory: Path) -> list[subprocess.CompletedProcess[str]]:
    """Each ExecStart in turn, as a oneshot service runs them: no shell, stopping at a failure."""
    unit = block_of("ini", "replica-nightly.service")
    settings = [line.split("=", 1) for line in unit.splitlines() if "=" in line]
    assert ["WorkingDirectory", "/srv/replica"] in settings
    discard = ["StandardOutput", "null"] in settings
    results = []
    for key, value in settings:
        if key != "ExecStart":
            continue
        argv = shlex.split(value.replace("/usr/local/bin/replica", str(BIN / "replica")))
        results.append(
            subprocess.run(
                argv,
                cwd=directory,
                stdout=subprocess.DEVNULL if discard else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
            )
        )
        if results[-1].returncode != 0:
            break
    return results


def test_the_nightly_check_passes_when_yesterday_is_complete(tmp_path: Path) -> None:
    directory = nightly_directory(tmp_path, yesterday())
    cron = cron_nightly(directory)
    assert (cron.returncode, cron.stdout, cron.stderr) == (0, "", "")  # cron mails nothing
    steps = systemd_nightly(directory)
    assert [step.returncode for step in steps] == [0, 0, 0], [s.stderr for s in steps]


def test_the_nightly_check_fails_for_its_own_reason_when_yesterday_is_missing(
    tmp_path: Path,
) -> None:
    directory = nightly_directory(tmp_path, yesterday() - timedelta(days=5))
    reason = f"no commands recorded on {yesterday().date().isoformat()}"
    cron = cron_nightly(directory)
    assert (cron.returncode, cron.stdout) == (1, "")
    assert cron.stderr.count("\n") == 1 and reason in cron.stderr, cron.stderr
    steps = systemd_nightly(directory)
    assert [step.returncode for step in steps] == [0, 0, 1]
    assert reason in steps[-1].stderr, steps[-1].stderr
