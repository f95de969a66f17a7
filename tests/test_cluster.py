"""``decode`` and ``verify`` on a real Dask cluster: two worker processes on loopback, reading and
writing the same archive as this process. What they write is what a local run writes, table for
table, even when a worker is killed mid-run; what they report is what a local run reports."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import distributed
import pyarrow.parquet as pq
import pytest
from replica.decoder.archive import decode_archive
from replica.schemas.cluster import run_tasks
from replica.schemas.errors import ArchiveError

from replica.maintenance.node_import import import_node
from replica.maintenance.verify import verify
from tests.conftest import replica
from tests.localcluster import GUARD_S, killing_a_worker, local_cluster
from tests.rawarchive import feed_rows, write_archive
from tests.test_import_node import BASE, block, node_file


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.Client]:
    with local_cluster() as client:
        yield client


def _archive(root: Path, per_segment: int) -> Path:
    write_archive(root, feed_rows(), per_segment=per_segment)
    return root


def _decoded(root: Path) -> dict[str, object]:
    """Every decoded file by its place under decoded/, as the Arrow table it reads as."""
    return {
        str(p.relative_to(root / "decoded")): pq.read_table(p)
        for p in sorted((root / "decoded").rglob("*.parquet"))
    }


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]


def _same_tables(local: Path, clustered: Path) -> None:
    ours, theirs = _decoded(local), _decoded(clustered)
    assert ours.keys() == theirs.keys() and ours
    for name, table in ours.items():
        assert table.equals(theirs[name]), name  # type: ignore[attr-defined]


def test_a_cluster_decode_writes_what_a_local_decode_writes(
    tmp_path: Path, cluster: distributed.Client
):
    local, clustered = _archive(tmp_path / "a", 500), _archive(tmp_path / "b", 500)
    calls: list[tuple[int, int]] = []
    expected = decode_archive(local)
    summary = decode_archive(clustered, cluster=cluster, on_progress=lambda *c: calls.append(c))
    assert summary.to_dict() == expected.to_dict() and summary.decoded > 1
    assert calls[0] == (0, summary.decoded) and calls[-1] == (summary.decoded,) * 2
    assert [done for done, _ in calls] == list(range(summary.decoded + 1))
    _same_tables(local, clustered)
    again = decode_archive(clustered, cluster=cluster)
    assert again.decoded == 0 and not again.failed


def test_a_worker_killed_mid_run_only_means_its_task_runs_elsewhere(
    tmp_path: Path, cluster: distributed.Client
):
    local, clustered = _archive(tmp_path / "a", 100), _archive(tmp_path / "b", 100)
    expected = decode_archive(local)
    kill_one, killed = killing_a_worker(cluster)

    summary = decode_archive(clustered, cluster=cluster, on_progress=kill_one)
    assert killed and summary.to_dict() == expected.to_dict()
    _same_tables(local, clustered)
    assert _leftovers(clustered) == []
    cluster.wait_for_workers(2, timeout=GUARD_S)  # the nanny starts another, for the next test


def test_the_cli_decodes_on_a_scheduler_given_by_address(
    tmp_path: Path, cluster: distributed.Client
):
    local, clustered = _archive(tmp_path / "a", 1000), _archive(tmp_path / "b", 1000)
    decode_archive(local)
    address = cluster.scheduler.address
    done = replica("decode", clustered, "--cluster", address, timeout=GUARD_S)
    assert done.returncode == 0, done.stderr
    assert "decoded 4 of 4 segments" in done.stdout
    _same_tables(local, clustered)


def test_verify_on_a_cluster_reports_what_verify_here_reports(
    tmp_path: Path, cluster: distributed.Client
):
    root = _archive(tmp_path / "a", 500)
    decode_archive(root)
    before = verify(root)  # the fixture feed has a hole no gap record names
    assert before.segments == 7 and verify(root, cluster=cluster) == before
    segments = sorted((root / "raw").rglob("*.parquet"))
    segments[1].write_bytes(segments[1].read_bytes()[:-100])  # a torn footer
    shutil.copy(segments[2], segments[2].with_name("1-2.parquet"))  # an overlap
    damaged = verify(root)
    assert len(damaged.problems) > len(before.problems)
    assert verify(root, cluster=cluster) == damaged
    done = replica("verify", root, "--cluster", cluster.scheduler.address, timeout=GUARD_S)
    assert done.returncode == 1 and done.stdout == replica("verify", root).stdout


def _node_files(directory: Path) -> Path:
    """Files an import meets: one overlapping the one before, a hole, a bad middle line, an
    unfinished last line, one out of the node's order, and one compressed."""
    node_file(directory, BASE, 30)
    node_file(directory, BASE + 20, 30, compressed=True)  # its first 10 blocks are the above's
    node_file(directory, BASE + 70, 10, tail=block(BASE + 81)[:-5])
    bad = node_file(directory, BASE + 100, 5)
    bad.write_bytes(bad.read_bytes().replace(b"\n", b"\nnot a block\n", 1))
    (directory / str(BASE + 120)).write_bytes(block(BASE + 122) + b"\n" + block(BASE + 121) + b"\n")
    node_file(directory, BASE + 130, 40, compressed=True)
    return directory


def _raw(root: Path) -> dict[str, object]:
    return {
        str(p.relative_to(root / "raw")): pq.read_table(p)
        for p in sorted((root / "raw").rglob("*.parquet"))
    }


def test_import_node_on_a_cluster_imports_what_a_local_import_does(
    tmp_path: Path, cluster: distributed.Client
):
    files = _node_files(tmp_path / "node")
    local, clustered = tmp_path / "a", tmp_path / "b"
    for root in (local, clustered):  # an archive holding some of the blocks already
        import_node([files / str(BASE + 70)], root)
    expected = import_node([files], local)
    calls: list[tuple[int, int]] = []
    summary = import_node([files], clustered, lambda *c: calls.append(c), cluster=cluster)
    assert summary == expected and summary.imported and summary.present
    assert summary.warnings and summary.failed and summary.truncated and summary.gaps
    assert [done for done, _ in calls] == list(range(summary.files + 1))
    ours, theirs = _raw(local), _raw(clustered)
    assert ours.keys() == theirs.keys()
    assert all(table.equals(theirs[name]) for name, table in ours.items())  # type: ignore[attr-defined]
    assert _leftovers(clustered) == []
    assert import_node([files], clustered, cluster=cluster).segments == 0
    # verify of a node archive checks block order across segments, here and on workers alike
    assert verify(clustered, cluster=cluster) == verify(clustered)
    done = replica(
        "import-node", files, clustered, "--cluster", cluster.scheduler.address, timeout=GUARD_S
    )
    assert done.returncode == 1 and "0 segments written" in done.stdout, done.stderr


def test_without_the_extra_cluster_is_one_line_naming_it(tmp_path: Path):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "distributed.py").write_text("raise ImportError('not installed')\n")
    root = _archive(tmp_path / "a", 1000)
    env = {"PYTHONPATH": str(blocker)}
    done = replica("decode", root, "--cluster", "tcp://127.0.0.1:1", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "replica: error: --cluster needs dask.distributed: pip install 'replica[cluster]'"
    ]


def test_an_address_that_is_not_one_is_one_line_and_exit_2(tmp_path: Path):
    root = _archive(tmp_path / "a", 1000)
    done = replica("decode", root, "--cluster", "nonsense")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "replica: error: --cluster nonsense: not a scheduler address like tcp://HOST:8786 "
        "(missing port number in address 'nonsense')"
    ]


def test_a_task_that_kills_every_worker_running_it_is_one_error(cluster: distributed.Client):
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(ArchiveError, match=r"^the workers running task 0 of die died each time"):
        list(run_tasks(cluster, die, [()], ()))
    cluster.wait_for_workers(2, timeout=GUARD_S)


def test_the_largest_tasks_start_first_whatever_their_order(cluster: distributed.Client):
    """A run lasts as long as its last task: a large one started last keeps one worker busy
    while the others idle. Given their sizes, tasks start largest first."""

    def started(seconds: float) -> float:
        began = time.time()
        time.sleep(seconds)
        return began

    sizes = [1, 2, 3, 4, 5, 6]
    began = {i: at for i, at, _ in run_tasks(cluster, started, [(0.3,)] * 6, (), sizes)}
    by_start = sorted(began, key=began.__getitem__)
    assert set(by_start[:2]) == {5, 4} and set(by_start[-2:]) == {1, 0}


def test_paths_relative_to_this_process_reach_workers_elsewhere(
    tmp_path: Path, cluster: distributed.Client, monkeypatch: pytest.MonkeyPatch
):
    """The workers started in another working directory, as on another machine."""
    _archive(tmp_path / "a", 500)
    _node_files(tmp_path / "node")
    monkeypatch.chdir(tmp_path)
    summary = decode_archive(Path("a"), cluster=cluster)
    assert summary.decoded == summary.segments and not summary.failed
    assert verify(Path("a"), cluster=cluster) == verify(Path("a"))
    local = import_node([Path("node")], Path("b"))
    assert local.failed and import_node([Path("node")], Path("c"), cluster=cluster) == local
