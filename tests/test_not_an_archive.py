"""A path that is not an archive: every command but ``record`` and ``import-node`` refuses it
with one line and exit 2, creating and locking nothing; an archive with no commands yet is one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from replica.schemas.errors import ArchiveError, NotAnArchive, UsageError

import replica
from replica.maintenance.compact import compact
from replica.maintenance.verify import read_gaps, verify
from tests.conftest import replica as run_replica

COMMANDS = [
    ["verify", "{a}"],
    ["gaps", "{a}"],
    ["stats", "{a}"],
    ["decode", "{a}"],
    ["compact", "{a}"],
    ["sql", "{a}", "SELECT 1"],
    ["duckdb", "{a}", "{a}.duckdb"],
    ["replay", "{a}"],
    ["serve", "{a}", "--port", "0"],
    ["heal", "{a}", "--from", "{source}"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
@pytest.mark.parametrize("what", ["empty", "typo"])
def test_a_command_on_a_directory_that_is_no_archive_is_one_line_exit_2(
    tmp_path: Path, args: list[str], what: str
) -> None:
    path = tmp_path / "archive"
    if what == "empty":
        path.mkdir()
    result = run_replica(*(arg.format(a=path, source=tmp_path) for arg in args))
    assert result.returncode == 2, result.stderr
    expected = (
        f"{path} is not an archive: it has none of raw/, spool/, gaps/, quarantine/, seq-space "
        "(only 'replica record' and 'replica import-node' create one)"
        if what == "empty"
        else f"archive {path} does not exist or is not a directory"
    )
    assert result.stderr == f"replica: error: {expected}\n"
    assert list(tmp_path.iterdir()) == ([path] if what == "empty" else [])
    assert not path.exists() or not any(path.iterdir())


@pytest.mark.parametrize(
    "read", [replica.open, verify, read_gaps, replica.decode, compact, replica.connect]
)
def test_the_api_refuses_a_directory_that_is_no_archive(read, tmp_path: Path) -> None:
    for path in (tmp_path / "typo", tmp_path):
        with pytest.raises(NotAnArchive) as info:
            read(str(path))
        assert isinstance(info.value, ArchiveError) and isinstance(info.value, UsageError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry", ["raw", "spool", "gaps", "quarantine"])
def test_an_archive_without_commands_yet_says_so(tmp_path: Path, entry: str) -> None:
    (tmp_path / entry).mkdir()
    verified = run_replica("verify", tmp_path)
    assert verified.returncode == 0 and "no commands" in verified.stdout
    stats = run_replica("stats", tmp_path)
    assert (stats.returncode, stats.stdout) == (0, f"{tmp_path}: no commands yet\n")
    replayed = run_replica("replay", tmp_path)
    assert (replayed.returncode, replayed.stdout) == (0, "")
    assert replayed.stderr == f"replica: note: {tmp_path} has no commands yet\n"
