"""The CLI's tables and progress bars (``replica.tables``, ``replica.progress``): plain text
that shows every cell as given, and a bar that only a terminal ever sees."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from replica.progress import progress_bar
from replica.tables import text_table


def test_a_table_shows_cells_as_given_and_never_wraps() -> None:
    long = "x" * 300
    text = text_table(
        ["name", "count"], [["[bold]not markup[/bold] :smile:", "7"], [long, "12,345"]]
    )
    lines = text.splitlines()
    assert text.endswith("\n") and "\x1b" not in text
    assert lines[0].split() == ["name", "count"]
    assert lines[2].startswith("[bold]not markup[/bold] :smile:")
    assert lines[3].startswith(long) and lines[3].endswith("12,345")
    assert len(lines) == 4 and all(line == line.rstrip() for line in lines)


def test_columns_to_the_right_line_up_on_their_last_digit() -> None:
    lines = text_table(["n", "word"], [["1", "a"], ["1000", "bb"]], [True, False]).splitlines()
    assert lines[2].index("1") + 1 == lines[3].index("1000") + 4
    assert lines[2].index("a") == lines[3].index("bb")


def test_a_wide_character_does_not_shift_the_next_column() -> None:
    lines = text_table(["who", "n"], [["交易所", "1"], ["abc", "2"]]).splitlines()
    # Three wide characters fill six columns; the second column starts at the same column.
    assert lines[2].index("1") + 3 == lines[3].index("2")


def test_no_bar_without_a_terminal_or_with_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    for quiet in (False, True):
        with progress_bar("working", quiet=quiet) as on_progress:
            on_progress(0, 3)
            on_progress(3, 3)
    assert capfd.readouterr() == ("", "")


_BAR_SCRIPT = """
import sys
from replica.progress import progress_bar
quiet = sys.argv[1] == "quiet"
with progress_bar("working", quiet=quiet) as on_progress:
    for done in range(4):
        on_progress(done, 3)
with progress_bar("idle", quiet=quiet) as on_progress:
    on_progress(0, 0)
"""


def _stderr_on_a_terminal(*args: str) -> bytes:
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-c", _BAR_SCRIPT, *args],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={**os.environ, "COLUMNS": "80", "TERM": "xterm"},
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


def test_a_terminal_gets_the_bar_and_quiet_silences_it() -> None:
    shown = _stderr_on_a_terminal("loud")
    assert b"working" in shown and b"3/3" in shown
    assert b"idle" not in shown, "nothing to do draws no bar"
    assert _stderr_on_a_terminal("quiet") == b""
