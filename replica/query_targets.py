"""Where a query would write files of its own: ``COPY ... TO``, ``EXPORT DATABASE``, ``ATTACH``.

``replica sql`` refuses to write inside the archive (``--output`` there is a usage error), since
a file under ``raw/`` or ``decoded/`` would be read as archived data and one anywhere else is
clutter that ``verify`` reports. A query can write too, so its targets get the same rule. The
reading is deliberately conservative: every quoted text (``'...'``, ``"..."``, ``$$...$$``)
after a ``COPY`` statement's ``TO``, or anywhere in an ``EXPORT`` or ``ATTACH`` statement, is
taken as a path; one that resolves inside the archive refuses the whole query, even if DuckDB
would have read it as something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb

# Comments, quoted texts and words, in the order they come; what is inside a comment or a
# quote is never read as a keyword.
_TOKEN = re.compile(
    r"--[^\n]*|/\*.*?(?:\*/|$)|'((?:[^']|'')*)'?|\"((?:[^\"]|\"\")*)\"?|\$\$(.*?)(?:\$\$|$)|(\w+)",
    re.DOTALL,
)
_WRITING = {"COPY", "EXPORT", "ATTACH"}


def _statements(query: str) -> list[tuple[str, str]]:
    """(kind, text) per statement; none when DuckDB cannot parse it (it will then fail the
    query itself, before writing anything)."""
    try:
        return [(s.type.name, s.query) for s in duckdb.extract_statements(query)]
    except duckdb.Error:
        return []


def _targets(kind: str, text: str) -> Iterator[str]:
    """The quoted texts of a writing statement: for COPY, those after its first TO."""
    after_to = kind != "COPY"  # COPY table FROM 'file' reads
    for match in _TOKEN.finditer(text):
        single, double, dollar, word = match.groups()
        if word is not None:
            after_to = after_to or word.upper() == "TO"
        elif not after_to:
            continue
        elif single is not None:
            yield single.replace("''", "'")
        elif double is not None:
            yield double.replace('""', '"')
        elif dollar is not None:
            yield dollar


def writes_inside(query: str, root: Path) -> str | None:
    """The first path ``query`` would write that resolves inside ``root``, or None."""
    inside = root.resolve()
    for kind, text in _statements(query):
        if kind not in _WRITING:
            continue
        for target in _targets(kind, text):
            if target and Path(target).expanduser().resolve().is_relative_to(inside):
                return target
    return None


def writes_to_store(query: str) -> str | None:
    """The first URL (``s3://...``) ``query`` would write, or None: a query on an archive in an
    object store reaches the store with the archive's credentials, and writes none of it."""
    for kind, text in _statements(query):
        if kind in _WRITING:
            for target in _targets(kind, text):
                if "://" in target:
                    return target
    return None
