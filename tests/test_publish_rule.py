"""The publish rule of archives without rename: a compaction on a store uploads its merged
segment, then deletes the inputs. Whatever it left when it stopped, readers see each seq once."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from replica.schemas.archive import ArchiveLayout

HOUR = 490_000


@st.composite
def compacted_states(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Sealed segments (disjoint, maybe with gaps between), and the files a compaction left of
    them: each run of neighbours merged or not; a merged run with all, some or none of its
    inputs still present."""
    lengths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=12))
    gaps = draw(st.lists(st.integers(0, 3), min_size=len(lengths), max_size=len(lengths)))
    sealed, seq = [], draw(st.integers(0, 2**40))
    for length, gap in zip(lengths, gaps, strict=True):
        seq += gap
        sealed.append((seq, seq + length - 1))
        seq += length
    files, at = [], 0
    while at < len(sealed):
        size = draw(st.integers(1, len(sealed) - at))
        run = sealed[at : at + size]
        at += size
        if size > 1 and draw(st.booleans()):
            files.append((run[0][0], run[-1][1]))
            files += [segment for segment in run if draw(st.booleans())]
        else:
            files += run
    return sealed, files


@settings(max_examples=200, deadline=None, database=None)
@given(compacted_states())
def test_each_seq_is_listed_once_whatever_a_compaction_left(
    state: tuple[list[tuple[int, int]], list[tuple[int, int]]],
) -> None:
    sealed, files = state
    with tempfile.TemporaryDirectory() as directory:
        layout = ArchiveLayout(Path(directory))
        for first, last in files:
            path = layout.segment_path(first, last, HOUR)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        kept, superseded = layout.listing()
        assert kept == layout.segments()
        listed = [(s.first_seq, s.last_seq) for s in kept]
        seqs = [seq for first, last in listed for seq in range(first, last + 1)]
        held = {seq for first, last in sealed for seq in range(first, last + 1)}
        assert len(seqs) == len(set(seqs))
        assert held <= set(seqs)
        left_out = [(s.first_seq, s.last_seq) for s in superseded]
        assert sorted(listed + left_out) == sorted(files)
