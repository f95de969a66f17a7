"""``schemas.files``' temporary names: what a writer names its file and a cleanup reads back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.schemas.files import temporary_path, temporary_writer, writer_alive

names = st.text(st.characters(blacklist_characters="/\x00", codec="utf-8"), min_size=1).filter(
    lambda name: name not in (".", "..")
)


@settings(max_examples=200, deadline=None, database=None)
@given(names)
def test_a_temporary_name_names_its_writer_and_hides_from_globs(name: str) -> None:
    final = Path("archive/raw") / name
    temporary = temporary_path(final)
    assert temporary.parent == final.parent
    assert temporary.name.startswith(".") and temporary.suffix == ".tmp"
    assert temporary_writer(temporary) == os.getpid()


@pytest.mark.parametrize(
    "name", ["x.parquet", "x.tmp", ".x.tmp", ".x..tmp", ".x.-5.tmp", ".x.12a.tmp", ".x.12"]
)
def test_names_that_are_not_temporary_names_have_no_writer(name: str) -> None:
    assert temporary_writer(Path(name)) is None
    assert not writer_alive(Path(name))


def test_a_temporary_file_of_an_ended_process_is_abandoned() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    assert not writer_alive(Path(f".x.parquet.{int(ended.stdout)}.tmp"))
    assert writer_alive(temporary_path(Path("x.parquet")))
