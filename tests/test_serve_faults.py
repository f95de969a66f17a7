"""``replica serve`` and ``replica replay`` against clients that try to break them, as real
subprocesses with real loopback clients: a pace so slow that a wait is centuries long, clients
that leave a slow replay, a stop while clients wait for days, and query values no parser
expected. Each test reproduces an attack that once stalled, leaked or crashed the server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import PATIENCE_S
from tests.replayarchives import rows_for, write_segments
from tests.served import Served

DAY_MS = 86_400_000
BASE_MS = 1_795_219_080_000  # 2026-11-20T23:58:00Z
SLOWEST = "0.000001"  # the slowest speed accepted


@pytest.fixture(scope="module")
def hole_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seq 0, then a 10-day pause in the feed, then seqs 1-5 10 ms apart."""
    root = tmp_path_factory.mktemp("hole") / "archive"
    ts_ms = [BASE_MS] + [BASE_MS + 10 * DAY_MS + 10 * i for i in range(5)]
    write_segments(root, rows_for(list(range(6)), ts_ms))
    return root


@pytest.fixture(scope="module")
def steady_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seqs 0-199, 10 ms apart."""
    root = tmp_path_factory.mktemp("steady") / "archive"
    write_segments(root, rows_for(list(range(200))))
    return root


async def seqs(ws: ClientConnection, count: int) -> list[int]:
    return [json.loads(await asyncio.wait_for(ws.recv(), PATIENCE_S))["seq"] for _ in range(count)]


async def close_code(ws: ClientConnection) -> int | None:
    """The code of the close frame the server ends ``ws`` with (None: it sent none)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), PATIENCE_S)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_a_client_paced_for_centuries_delays_no_other_client(
    hole_archive: Path, tmp_path: Path
) -> None:
    """At the slowest speed seq 1 is due 27,000 years after seq 0, longer than a sleep or a
    lock can wait in one call. That client waits; another one, paced at speed 1, gets its
    commands all the same, and SIGTERM closes both with 1001."""
    with Served(hole_archive, tmp_path) as served:

        async def clients() -> tuple[list[int], list[int], list[int | None]]:
            slow = await connect(f"{served.url}/?speed={SLOWEST}")
            await slow.recv()  # connected
            first = await seqs(slow, 1)
            paced = await connect(f"{served.url}/?from_seq=1&speed=1")
            await paced.recv()
            rest = await seqs(paced, 5)
            served.process.send_signal(signal.SIGTERM)
            return first, rest, [await close_code(slow), await close_code(paced)]

        first, rest, codes = asyncio.run(clients())
        assert served.process.wait(PATIENCE_S) == 0
    assert (first, rest, codes) == ([0], [1, 2, 3, 4, 5], [1001, 1001])
    assert "Traceback" not in served.log.read_text()


def test_a_replay_paced_for_centuries_waits_without_an_error(hole_archive: Path) -> None:
    """``replica replay`` at the slowest speed: seq 0, then a wait of 27,000 years, which once
    ended at once in OverflowError. The wait is cut short here by SIGTERM."""
    command = [sys.executable, "-m", "replica", "replay", hole_archive, "--speed", SLOWEST]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert json.loads(process.stdout.readline())["seq"] == 0
            with pytest.raises(subprocess.TimeoutExpired):  # still waiting for seq 1
                process.wait(2)
        finally:
            process.terminate()
        process.wait(PATIENCE_S)
        assert process.stderr.read() == ""


def test_clients_that_leave_a_slow_replay_release_their_sockets_at_once(
    steady_archive: Path, tmp_path: Path
) -> None:
    """At the slowest speed each client's second command is due in 10,000 s. Clients that
    read the first and leave are let go at once: every handler ends and the server's open
    files fall back to what they were before they came."""
    clients = 30
    with Served(steady_archive, tmp_path) as served:
        baseline = served.open_fds()

        async def visit() -> list[int]:
            async with connect(f"{served.url}/?speed={SLOWEST}") as ws:
                await ws.recv()  # connected
                return await seqs(ws, 1)

        async def visits() -> list[list[int]]:
            return await asyncio.gather(*(visit() for _ in range(clients)))

        assert asyncio.run(visits()) == [[0]] * clients
        deadline = time.monotonic() + PATIENCE_S
        while (
            served.open_fds() > baseline
            or served.log.read_text().count("connection ended") < clients
        ):
            assert time.monotonic() < deadline, (
                f"{served.open_fds()} files open, {baseline} before the clients came; "
                f"{served.log.read_text().count('connection ended')} of {clients} handlers ended"
            )
            time.sleep(0.05)
        assert served.stop() == 0


def _half_open(url: str) -> socket.socket:
    """A client that connects but never sends its opening handshake."""
    host, port = url.removeprefix("ws://").split(":")
    return socket.create_connection((host, int(port)))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_closes_clients_waiting_for_days_with_1001_and_exits(
    hole_archive: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    """Clients at speed 1 read seq 0; seq 1 is due in 10 days. A stop closes them with 1001
    and the server exits, also past a client that never finished opening."""
    with Served(hole_archive, tmp_path) as served:
        silent = _half_open(served.url)

        async def clients() -> list[int | None]:
            waiting = [await connect(f"{served.url}/?speed=1") for _ in range(5)]
            for ws in waiting:
                await ws.recv()  # connected
                assert await seqs(ws, 1) == [0]
            served.process.send_signal(signum)
            return [await close_code(ws) for ws in waiting]

        try:
            codes = asyncio.run(clients())
            stopping = time.monotonic()
            assert served.process.wait(PATIENCE_S) == 0
            print(f"exited {time.monotonic() - stopping:.2f} s after the clients saw 1001")
        finally:
            silent.close()
    assert codes == [1001] * 5
    assert "Traceback" not in served.log.read_text()


BAD_QUERIES = [
    (
        "from_seq=" + "9" * 7000,
        "query parameter from_seq is 7000 characters long; no valid value is longer than 64",
    ),
    ("to_seq=" + "9" * 25, "to_seq is above 9223372036854775807, the largest seq there can be"),
    ("from_seq=9223372036854775808", "from_seq is above 9223372036854775807"),
    ("from_seq=-1", "query parameter from_seq='-1' is not a seq (an integer from 0 to"),
    ("start=" + "2" * 100, "query parameter start is 100 characters long"),
    *(
        (f"speed={value}", f"speed {value!r} is not a number of at least 1e-06 or max")
        for value in ("nan", "inf", "-1", "1e400", "1e-12", "0")
    ),
]


def test_query_values_no_parser_expected_get_400_with_the_reason(
    steady_archive: Path, tmp_path: Path
) -> None:
    """Each is refused with 400 and one line saying why, nothing reaches the log as a
    traceback, and the server goes on serving."""
    with Served(steady_archive, tmp_path) as served:

        async def clients() -> tuple[list[tuple[int, str]], list[int]]:
            refusals = []
            for query, _ in BAD_QUERIES:
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(f"{served.url}/?{query}"):
                        pass
                response = refused.value.response
                refusals.append((response.status_code, response.body.decode()))
            async with connect(f"{served.url}/?to_seq=2&speed=max") as ws:
                await ws.recv()  # connected
                return refusals, await seqs(ws, 3)

        refusals, served_seqs = asyncio.run(clients())
        assert served.stop() == 0
    for (query, reason), (status, body) in zip(BAD_QUERIES, refusals, strict=True):
        assert status == 400 and reason in body and body.count("\n") == 1, (query[:40], body)
    assert served_seqs == [0, 1, 2]
    assert "Traceback" not in served.log.read_text()
