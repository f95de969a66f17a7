"""Run every benchmark and print one table of their figures beside their targets.

record.py, decode.py, replay.py, query.py, age.py, cluster.py, relay.py and serve_memory.py run
in turn, each as a subprocess with its default sizes (several minutes in all), their output
streamed as it comes with the benchmark's name in front. Each is given ``--json FILE`` (a
temporary file), where it writes its final measures as a JSON list of objects:

    {"benchmark": "query", "measure": "gap finding replica/plain", "value": 0.93,
     "op": "<=", "target": 1.2, "unit": "", "met": true}

``unit`` is "" for a ratio (ours against the bare baseline that benchmark measured in the same
run, since these machines are shared and noisy), otherwise the unit of an absolute figure.
The table lists every measure with its target and whether it was met or missed.

    python benchmarks/run.py

Targets are informational: the exit status is 0 unless a benchmark itself fails (exits non-zero
or writes no measures); the table then names it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each benchmark's extra arguments: none, so each runs at its default size.
BENCHMARKS: dict[str, list[str]] = {
    "record": [],
    "decode": [],
    "replay": [],
    "query": [],
    "age": [],
    "cluster": [],
    "relay": [],
    "serve_memory": [],
}


def run_benchmark(name: str, args: list[str], json_path: Path) -> int:
    """Run benchmarks/<name>.py, echoing its output line by line; returns its exit status."""
    command = [sys.executable, "-u", str(HERE / f"{name}.py"), *args, "--json", str(json_path)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(f"[{name}] {line}", end="", flush=True)
    return process.returncode


def figure(value: float, unit: str, digits: str = ".3f") -> str:
    """A ratio (no unit) to ``digits``, anything else in whole units."""
    return f"{value:{digits}}" if not unit else f"{value:,.0f} {unit}"


def table(measures: list[dict], failed: dict[str, int]) -> str:
    rows = [
        (
            m["benchmark"],
            m["measure"],
            figure(m["value"], m["unit"]),
            f"{m['op']} {figure(m['target'], m['unit'], 'g')}",
            "met" if m["met"] else "MISSED",
        )
        for m in measures
    ]
    for name, code in failed.items():
        rows.append((name, f"exited {code}" if code else "wrote no measures", "", "", "FAILED"))
    header = ("benchmark", "measure", "value", "target", "result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(width) if i in (2, 3) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    met = sum(m["met"] for m in measures)
    lines.append(f"{met} of {len(measures)} targets met")
    return "\n".join(lines)


def run_all(benchmarks: dict[str, list[str]]) -> int:
    """Run the benchmarks (name: extra arguments) and print the table; returns the exit status."""
    began = time.perf_counter()
    measures: list[dict] = []
    failed: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="replica-bench-run-") as tmp:
        for name, args in benchmarks.items():
            json_path = Path(tmp) / f"{name}.json"
            code = run_benchmark(name, args, json_path)
            if code != 0 or not json_path.exists():
                failed[name] = code
                continue
            measures += json.loads(json_path.read_text(encoding="utf-8"))
    print()
    print(table(measures, failed))
    print(f"total {time.perf_counter() - began:.1f} s")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.parse_args()
    sys.exit(run_all(BENCHMARKS))


if __name__ == "__main__":
    main()
