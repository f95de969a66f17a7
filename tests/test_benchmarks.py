"""Keeps benchmarks/ working at small sizes: run.py runs each benchmark once, each prints its
figures and writes them as JSON, and run.py gathers them into one table. The figures are read by
people, never asserted: at these sizes and on shared machines they mean little.

The smoke run is opt-in (``python -m pytest -m benchmark``): it takes longer than the rest of
the suite's checks are worth on every run. The refusals below stay in the default run, since
each costs only a Python start-up.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# Small sizes: about 90 s for all eight on 2 cores.
SMALL = {
    "record": ["--quick"],
    "decode": ["--commands", "3000", "--blocks", "4", "--jobs-blocks", "4"],
    "replay": ["--commands", "5000", "--paced", "200"],
    "query": ["--commands", "50000"],
    "age": ["--short", "3", "--long", "12", "--large-rows", "20000"],
    "cluster": ["--commands", "3000"],
    "relay": ["--quick"],
    "serve_memory": ["--commands", "20000", "--clients", "4"],
}
MEASURES = {
    "record": 4,  # two throughput ratios, the size ratio, peak RSS
    "decode": 2 + 2,  # the feed's two ratios, mainnet blocks against json.loads and --jobs
    "replay": 2 + 8 + 1,  # iterator/bare, commands/s, p99 of 4 modes at 2 speeds, store/bare
    "query": 2,
    "age": 3 + 1,  # long/short per nightly step, verify's peak RSS
    "cluster": 1,
    "relay": 2,  # relay latency p99, throughput drop with 4 clients
    "serve_memory": 3,  # per-client RSS of replay, paced and follow
}


def run_script(*args: object) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    print(result.stdout, result.stderr)
    return result


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.benchmark
def test_every_benchmark_runs_once_into_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = load_benchmark("run")
    assert set(SMALL) == set(run.BENCHMARKS)
    archive = tmp_path / "query-archive"

    status = run.run_all({**SMALL, "query": [*SMALL["query"], "--dir", str(archive)]})
    out = capsys.readouterr().out
    print(out)
    assert status == 0
    # Each benchmark's own output comes through, prefixed with its name.
    for name, line in (
        ("record", r"ratio recorder/bare "),
        ("record", r"ratio archive/zstd-3 "),
        ("record", r"(PASS|MISS) throughput recorder/bare "),
        ("decode", r"(PASS|MISS) ratio protobuf decode/hand-written "),
        ("decode", r"(PASS|MISS) ratio node decode/json.loads "),
        ("decode", r"(PASS|MISS) ratio mainnet decode/json.loads "),
        ("replay", r"ratio serve/bare "),
        ("replay", r".*speed 10 async for, precise"),
        ("replay", r"(PASS|MISS) iterator/bare "),
        ("replay", r"(PASS|MISS) store iterator/bare "),
        ("query", r"50,000 commands, .* built in "),
        ("query", r"(PASS|MISS) ratio count per day replica/plain "),
        ("query", r"(PASS|MISS) ratio gap finding replica/plain "),
        ("age", r"(PASS|MISS) ratio verify --date 12d/3d "),
        ("age", r"(PASS|MISS) verify peak RSS "),
        ("cluster", r"(PASS|MISS) ratio decode --cluster 2 workers/1 worker "),
        ("relay", r"(PASS|MISS) relay latency p99 "),
        ("relay", r"(PASS|MISS) throughput drop with 4 clients "),
        ("serve_memory", r"(PASS|MISS) serve replay per-client RSS "),
        ("serve_memory", r"info ratio follow/bare per-client RSS "),
    ):
        assert re.search(rf"^\[{name}\] {line}", out, re.MULTILINE), (name, line)
    table = out[out.index("\nbenchmark ") :]
    for name, count in MEASURES.items():
        rows = [line for line in table.splitlines() if line.startswith(f"{name} ")]
        assert len(rows) == count, (name, rows)
        assert all(line.endswith((" met", " MISSED")) for line in rows)
    for line in table.splitlines():
        if line.startswith("query "):  # "query  gap finding replica/plain  0.930  <= 1.2  met"
            value, result = line.split("<= 1.2")
            assert result.strip() == ("met" if float(value.split()[-1]) <= 1.2 else "MISSED")
    assert f"of {sum(MEASURES.values())} targets met" in table

    # A later run with the same --commands measures the archive this one built.
    assert load_benchmark("query").prepare_archive(archive, 50_000) == "reused"


@pytest.mark.benchmark
def test_the_replay_benchmark_reads_the_archive_from_a_store_too(tmp_path: Path) -> None:
    """The store run: the iterator and the bare loop over the same objects of a real store."""
    result = run_script(
        BENCHMARKS / "replay.py", "--commands", "5000", "--paced", "100", "--json",
        tmp_path / "replay.json",
    )  # fmt: skip
    assert result.returncode == 0
    assert re.search(r"^ratio store iterator/bare +\d", result.stdout, re.MULTILINE)
    assert re.search(r"^(PASS|MISS) store iterator/bare ", result.stdout, re.MULTILINE)
    measures = (tmp_path / "replay.json").read_text()
    assert '"measure": "store iterator/bare"' in measures


def test_the_query_benchmark_refuses_a_directory_it_did_not_build(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    result = run_script(BENCHMARKS / "query.py", "--commands", "1000", "--dir", tmp_path)
    assert result.returncode != 0
    assert "is not empty and holds no .benchmark-query.json" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "raw"]


def test_run_fails_when_a_benchmark_fails(capsys: pytest.CaptureFixture) -> None:
    run = load_benchmark("run")
    status = run.run_all({"query": ["--commands", "1"]})  # refused: too few
    out = capsys.readouterr().out
    assert status == 1
    assert "[query] " in out and "--commands must be at least 100" in out
    assert any(
        line.startswith("query ") and "exited 2" in line and line.endswith("FAILED")
        for line in out.splitlines()
    )


def test_the_bulk_feed_server_sends_the_frames_a_per_frame_server_sends(tmp_path: Path) -> None:
    """The two-endpoint benchmark's bulk server frames the file itself: a websockets client
    must read from it exactly the text messages the frame-by-frame server sends, then a close
    with 1000, and the server must report its read time."""
    feedprocess = importlib.import_module("benchmarks.feedprocess")
    frames = ['{"seq":1}', "x" * 125, "y" * 126, "z" * 70_000, "ü" * 40]
    path = tmp_path / "frames.jsonl"
    path.write_text("\n".join(frames) + "\n", encoding="utf-8")

    async def read_all(port: int) -> tuple[list[object], int | None]:
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
            got = [message async for message in ws]
            return got, ws.close_code

    process, pipe = feedprocess.spawn(feedprocess.bulk_feed_process, str(path), False)
    try:
        got, code = asyncio.run(read_all(feedprocess.expect(pipe, "port")))
        assert feedprocess.expect(pipe, "read") > 0
    finally:
        process.join(30)
        if process.exitcode is None:
            process.kill()
    assert got[1:] == frames  # after the connected greeting
    assert code == 1000
