"""Gather, render and write a report, whole or not at all."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replica.recorder import __version__
from replica.report.data import WHOLE_ARCHIVE, Range, gather
from replica.schemas.errors import UsageError

__all__ = ["WHOLE_ARCHIVE", "Range", "write_report"]


def write_report(root: Path, out: Path, asked: Range = WHOLE_ARCHIVE) -> dict[str, Any]:
    """Write the report on ``asked`` of the archive at ``root`` to ``out``, whole or not at all
    (a temporary file renamed over it); returns the figures it embeds."""
    from replica.report.page import render  # needs matplotlib: fail before reading anything

    if not (root / "raw").is_dir():
        raise UsageError(f"{root} is not an archive: it has no raw/ directory")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: directory {out.parent} does not exist")
    data = gather(root, asked)
    html = render(data, str(root.resolve()), __version__, datetime.now(UTC))
    temporary = out.with_name(f".{out.name}.tmp")
    try:
        temporary.write_text(html, encoding="utf-8")
        os.replace(temporary, out)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {exc.strerror}") from exc
    return data
