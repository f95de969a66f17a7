"""``schemas.seqranges`` against plain sets of seqs: every function says what the sets say."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from replica.schemas.seqranges import Range, holes, span, subtract, union

PROPERTY = settings(max_examples=500, deadline=None, database=None)

ranges = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 12)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=8,
)


def seqs(found: list[Range]) -> set[int]:
    return {seq for lo, hi in found for seq in range(lo, hi + 1)}


def assert_sorted_apart(found: list[Range]) -> None:
    """Sorted, each range non-empty, and a seq or more between each two."""
    assert all(lo <= hi for lo, hi in found)
    assert all(a[1] + 1 < b[0] for a, b in pairwise(found))


@PROPERTY
@given(st.integers(-(2**63), 2**63 - 1), st.integers(0, 50))
def test_span_counts_both_ends(first: int, extra: int) -> None:
    assert span(first, first + extra) == len(range(first, first + extra + 1))


@PROPERTY
@given(ranges)
def test_union_holds_exactly_the_seqs_of_its_ranges(given_ranges: list[Range]) -> None:
    merged = union(given_ranges)
    assert seqs(merged) == seqs(given_ranges)
    assert_sorted_apart(merged)


@PROPERTY
@given(ranges)
def test_holes_are_the_seqs_between_ranges(given_ranges: list[Range]) -> None:
    merged = union(given_ranges)
    found = holes(merged)
    if merged:
        everything = set(range(merged[0][0], merged[-1][1] + 1))
        assert seqs(found) == everything - seqs(merged)
    else:
        assert found == []
    assert_sorted_apart(found)


@PROPERTY
@given(ranges, ranges)
def test_subtract_leaves_the_seqs_minus_does_not_cover(kept: list[Range], minus: list[Range]):
    """Both sorted by first seq, either overlapping itself (as gap records may)."""
    kept, minus = sorted(kept), sorted(minus)
    found = subtract(kept, minus)
    assert seqs(found) == seqs(kept) - seqs(minus)
    assert all(lo <= hi for lo, hi in found)
    apart = union(kept)
    assert subtract(apart, minus) == union(subtract(apart, minus))  # disjoint in, disjoint out
