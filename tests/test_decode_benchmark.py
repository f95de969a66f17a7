"""Keeps benchmarks/decode.py working; its ratios are read by people, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_decode_benchmark_runs() -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "decode.py"
    result = subprocess.run(
        [sys.executable, script, "--commands", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "ratio protobuf decode/hand-written" in result.stdout
    assert "ratio node decode/json.loads" in result.stdout
