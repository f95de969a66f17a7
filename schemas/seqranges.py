"""Inclusive seq ranges: ``(first, last)`` holds the seqs first..last, both included.

Gap records, ``replica verify``, the node import and a replay all count and combine such
ranges; an off-by-one in any of them misreports what an archive is missing, so the arithmetic
lives here once, checked against plain sets of seqs by a property test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

Range = tuple[int, int]


def span(first: int, last: int) -> int:
    """How many seqs first..last holds."""
    return last - first + 1


def union(ranges: Iterable[Range]) -> list[Range]:
    """The seqs of ``ranges`` (in any order, overlapping or not) as sorted ranges that neither
    overlap nor touch."""
    merged: list[Range] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def holes(ranges: Sequence[Range]) -> list[Range]:
    """The seqs between consecutive ranges of ``ranges`` (sorted and disjoint)."""
    return [(a + 1, b - 1) for (_, a), (b, _) in pairwise(ranges) if a + 1 <= b - 1]


def subtract(ranges: Iterable[Range], minus: Sequence[Range]) -> list[Range]:
    """The parts of ``ranges`` that ``minus`` does not cover; both sorted by first seq. The
    parts come in the order of ``ranges``, so they are disjoint when ``ranges`` are."""
    result: list[Range] = []
    j = 0
    for lo, hi in ranges:
        while j < len(minus) and minus[j][1] < lo:
            j += 1
        start, k = lo, j
        while k < len(minus) and minus[k][0] <= hi:
            a, b = minus[k]
            if a > start:
                result.append((start, a - 1))
            start = max(start, b + 1)
            k += 1
        if start <= hi:
            result.append((start, hi))
    return result
