"""What every benchmark ends with: a PASS/MISS word per target, and its measures as JSON for
``benchmarks/run.py``."""

from __future__ import annotations

import json
from pathlib import Path


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def write_json(path: Path, benchmark: str, measures: list[tuple]) -> None:
    """The final (measure, value, op, target, unit) as JSON objects."""
    rows = [
        {"benchmark": benchmark, "measure": measure, "value": value, "op": op, "target": target,
         "unit": unit, "met": value >= target if op == ">=" else value <= target}
        for measure, value, op, target, unit in measures
    ]  # fmt: skip
    path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
