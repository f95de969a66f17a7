"""Keeps benchmarks/ working at small sizes: each runs, prints its figures and writes them as
JSON for run.py, which gathers them into one table. The figures are read by people, never
asserted: at these sizes and on shared machines they mean little."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# Small sizes: about 20 s for all four on 2 cores.
SMALL = {
    "record": ["--quick"],
    "decode": ["--commands", "3000"],
    "replay": ["--commands", "5000", "--paced", "200"],
    "query": ["--commands", "50000"],
}
MEASURES = {
    "record": 2,
    "decode": 2,
    "replay": 2 + 8,  # iterator/bare, commands/s, p99 of 4 modes at 2 speeds
    "query": 2,
}


def run_script(*args: object) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    print(result.stdout, result.stderr)
    return result


def load_run_module():
    spec = importlib.util.spec_from_file_location("benchmarks_run", BENCHMARKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_query_benchmark_runs_and_reuses_its_archive(tmp_path: Path) -> None:
    archive, measures = tmp_path / "archive", tmp_path / "query.json"
    first = run_script(BENCHMARKS / "query.py", *SMALL["query"], "--dir", archive)
    assert first.returncode == 0
    assert "50,000 commands" in first.stdout and "built in" in first.stdout
    assert "ratio count per day replica/plain" in first.stdout
    assert "ratio gap finding replica/plain" in first.stdout

    again = run_script(
        BENCHMARKS / "query.py", *SMALL["query"], "--dir", archive, "--json", measures
    )
    assert again.returncode == 0
    assert "reused" in again.stdout
    written = json.loads(measures.read_text())
    assert [m["measure"] for m in written] == [
        "count per day replica/plain",
        "gap finding replica/plain",
    ]
    for m in written:
        assert m["benchmark"] == "query" and m["op"] == "<=" and m["target"] == 1.2
        assert m["met"] == (m["value"] <= 1.2)


def test_the_query_benchmark_refuses_a_directory_it_did_not_build(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    result = run_script(BENCHMARKS / "query.py", "--commands", "1000", "--dir", tmp_path)
    assert result.returncode != 0
    assert "is not empty and holds no .benchmark-query.json" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "raw"]


def test_run_gathers_every_benchmark_into_one_table(capsys: pytest.CaptureFixture) -> None:
    run = load_run_module()
    assert set(SMALL) == set(run.BENCHMARKS)

    status = run.run_all(SMALL)
    out = capsys.readouterr().out
    print(out)
    assert status == 0
    # Each benchmark's own output comes through, prefixed with its name.
    for name, verdict in (
        ("record", "throughput recorder/bare"),
        ("decode", "ratio protobuf decode/hand-written"),
        ("decode", "ratio node decode/json.loads"),
        ("replay", "iterator/bare"),
        ("query", "ratio count per day replica/plain"),
        ("query", "ratio gap finding replica/plain"),
    ):
        assert re.search(rf"^\[{name}\] (PASS|MISS) {verdict} ", out, re.MULTILINE), verdict
    table = out[out.index("\nbenchmark ") :]
    for name, count in MEASURES.items():
        rows = [line for line in table.splitlines() if line.startswith(f"{name} ")]
        assert len(rows) == count, (name, rows)
        assert all(line.endswith((" met", " MISSED")) for line in rows)
    assert f"of {sum(MEASURES.values())} targets met" in table


def test_run_fails_when_a_benchmark_fails(capsys: pytest.CaptureFixture) -> None:
    run = load_run_module()
    status = run.run_all({"query": ["--commands", "1"]})  # refused: too few
    out = capsys.readouterr().out
    assert status == 1
    assert "[query] " in out and "--commands must be at least 100" in out
    assert any(
        line.startswith("query ") and "exited 2" in line and line.endswith("FAILED")
        for line in out.splitlines()
    )
