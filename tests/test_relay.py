"""``replica record --serve``: the recorder serves what it records, live and from any past seq.

The recorder is the real CLI in a subprocess, recording a loopback feed; clients are real
WebSocket clients. The ledger is what the archive holds once the recorder has stopped: each
client must end with exactly the ledger's commands from its ``from_seq`` (or from its first,
when it gave none), none twice and none skipped at the seams between sealed segments, spool and
live; a real gap (the feed's, or the restart's after a kill -9) shows as a seq jump.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replica.recorder.recorder import Recorder, RecorderConfig
from replica.recorder.relay import ArchivedColumns
from replica.replay.follow import live_edge
from replica.replay.live import LiveBatch
from replica.replay.records import ReplayRecord
from replica.replay.server import wire_frames
from replica.schemas.archive import ArchiveLayout
from replica.schemas.frames import command_frame
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from tests.conftest import FAST_BACKOFF, PATIENCE_S, raw_rows, replica
from tests.feedserver import Close, Live, Pause, ScriptedFeed, Send, Signal, WaitFor, frame
from tests.served import close_code, stalled_and_reader, wait_for_text

SEGMENT_ROWS = 1000


class Recording:
    """``replica record URL ARCHIVE --serve PORT ARGS`` as a user runs it; killed at the end if
    still running."""

    def __init__(self, url: str, archive: Path, log: Path, *args: str, port: int = 0) -> None:
        self.log = log
        with open(log, "a") as stderr:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "replica", "record", url, archive),
                    *("--serve", str(port), "--segment-rows", str(SEGMENT_ROWS), *args),
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, "SERVE_KEY": "relay-secret"},
            )
        found = wait_for_text(log, r"as it is recorded at (ws://127\.0\.0\.1:\d+)\n", self.process)
        self.url = found[1]

    def stop(self) -> dict:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=PATIENCE_S)
        assert self.process.returncode == 0, self.log.read_text()
        summary: dict = json.loads(out.strip().splitlines()[-1])
        return summary

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def seq_of(text: str | bytes) -> int:
    seq: int = json.loads(text)["seq"]
    return seq


async def read_through(ws: ClientConnection, last: int) -> list[int]:
    seqs: list[int] = []
    async with asyncio.timeout(PATIENCE_S):
        while not seqs or seqs[-1] < last:
            seqs.append(seq_of(await ws.recv()))
    return seqs


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def ledger(archive: Path) -> list[int]:
    return [row["seq"] for row in raw_rows(archive)]


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_each_archived_command_is_relayed_once_in_order_after_its_spool_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int | None
) -> None:
    """In process, on the hook alone: duplicates within a connection and after a reconnect, a
    real gap, seals every 100 rows, and (7) open units handing their rows to the writer in
    chunks; what is relayed is exactly the archive, in order, and each batch is in the archive's
    files (written to the spool, or sealed) when it is relayed: read back from them by another
    reader, as recovery after a kill -9 would read them."""
    if chunk_rows is not None:
        monkeypatch.setattr("replica.recorder.recorder.RAW_ROW_GROUP_ROWS", chunk_rows)
    layout = ArchiveLayout(tmp_path)
    relayed: list[int] = []
    not_yet_on_disk: list[int] = []

    def on_archived(archived: ArchivedColumns) -> None:
        seqs = archived[0]
        edge = live_edge(layout)
        if edge is None or edge < seqs[-1]:
            not_yet_on_disk.append(seqs[-1])
        relayed.extend(seqs)

    feed = ScriptedFeed(
        [Send.cmds(0, 299), Send.cmds(250, 310), Close(1011)],
        [Send.cmds(280, 330), Send.cmds(341, 449)],
    )
    with feed:
        config = RecorderConfig(
            urls=(feed.url,), archive=tmp_path, backoff=FAST_BACKOFF, segment_rows=100
        )
        recorder = Recorder(config, on_archived=on_archived)

        async def main() -> None:
            task = asyncio.create_task(recorder.run())
            async with asyncio.timeout(PATIENCE_S):
                while relayed[-1:] != [449]:
                    await asyncio.sleep(0.01)
            recorder.stop()
            await task

        asyncio.run(main())
    assert recorder.summary().duplicates > 0
    expected = list(range(0, 331)) + list(range(341, 450))
    assert relayed == ledger(tmp_path) == expected
    assert not_yet_on_disk == []


def test_with_two_endpoints_commands_held_for_a_missing_seq_are_relayed_when_released(
    tmp_path: Path,
) -> None:
    """One endpoint skips 50..59 and goes on; the other delivers them later: 60..99 wait in
    the merge, then the archive and the relay get 0..99 in seq order, each once."""
    relayed: list[int] = []
    late = threading.Event()
    us = ScriptedFeed([Send.cmds(0, 49), Send.cmds(60, 99), Signal(late)])
    jp = ScriptedFeed([WaitFor(late), Pause(0.2), Send.cmds(0, 99)])
    with us, jp:
        config = RecorderConfig(
            urls=(us.url, jp.url), archive=tmp_path, backoff=FAST_BACKOFF, gap_wait=PATIENCE_S
        )
        recorder = Recorder(config, on_archived=lambda archived: relayed.extend(archived[0]))

        async def main() -> None:
            task = asyncio.create_task(recorder.run())
            async with asyncio.timeout(PATIENCE_S):
                while relayed[-1:] != [99]:
                    await asyncio.sleep(0.01)
            recorder.stop()
            await task

        asyncio.run(main())
    assert relayed == ledger(tmp_path) == list(range(100))


FIRST_BATCH = 2500  # seqs 1..2500: two sealed segments of SEGMENT_ROWS, the rest spooled
LAST = 8000
FEED_GAP = range(5001, 5011)  # the feed's own gap: a seq jump for every client


def streaming_feed(first_sent: threading.Event, go: threading.Event) -> ScriptedFeed:
    """1..2500 at once, then (once the test says go) the rest in bursts, with a real gap."""
    rest = [seq for seq in range(FIRST_BATCH + 1, LAST + 1) if seq not in FEED_GAP]
    bursts: list = []
    for i in range(0, len(rest), 250):
        bursts += [Send(tuple(frame(seq) for seq in rest[i : i + 250])), Pause(0.01)]
    return ScriptedFeed(
        [Send.cmds(1, FIRST_BATCH), Signal(first_sent), WaitFor(go), *bursts], compression=None
    )


def test_clients_from_a_sealed_segment_the_spool_the_live_edge_and_now_get_the_ledger(
    tmp_path: Path,
) -> None:
    first_sent, go = threading.Event(), threading.Event()
    archive = tmp_path / "archive"
    layout = ArchiveLayout(archive)

    async def clients(url: str) -> dict[str, list[int]]:
        starts = {"sealed": 500, "spooled": 2200, "edge": FIRST_BATCH + 1, "now": None}
        opened = {}
        for name, start in starts.items():
            query = "" if start is None else f"?from_seq={start}"
            opened[name] = await connect(f"{url}/{query}", max_size=None)
            assert json.loads(await opened[name].recv())["type"] == "connected"
        go.set()
        await asyncio.sleep(0.1)  # mid-stream: its catch-up meets a moving live edge
        opened["joining"] = await connect(f"{url}/?from_seq=1", max_size=None)
        await opened["joining"].recv()
        received = await asyncio.gather(*(read_through(ws, LAST) for ws in opened.values()))
        for ws in opened.values():
            await ws.close()
        return dict(zip(opened, received, strict=True))

    feed = streaming_feed(first_sent, go)
    with feed, Recording(feed.url, archive, tmp_path / "record.log") as recording:
        try:
            # Where the clients start: 500 is in a sealed segment, 2200 only in the spool. The
            # spool write and the seal of 1001..2000 land in either order, so wait for both.
            wait_until(
                lambda: (
                    live_edge(layout) == FIRST_BATCH
                    and [s.last_seq for s in layout.segments()] == [1000, 2000]
                ),
                "the first batch archived: two sealed segments and the rest spooled",
            )
            received = asyncio.run(clients(recording.url))
        finally:
            go.set()  # a failure before the clients' go must not leave the feed waiting for it
        recording.stop()
    seqs = ledger(archive)
    assert seqs == [seq for seq in range(1, LAST + 1) if seq not in FEED_GAP]
    starts = {"sealed": 500, "spooled": 2200, "edge": FIRST_BATCH + 1, "joining": 1}
    starts["now"] = received["now"][0]
    assert starts["now"] <= FIRST_BATCH + 1  # it connected before anything after 2500 was sent
    for name, start in starts.items():
        assert received[name] == [seq for seq in seqs if seq >= start], name


def test_clients_must_present_the_serve_key_and_ask_only_for_from_seq(tmp_path: Path) -> None:
    async def statuses(url: str) -> list[int | str]:
        answers: list[int | str] = []
        for path, headers in [
            ("/", {}),
            ("/", {"x-api-key": "wrong"}),
            ("/?from_seq=1&speed=2", {"x-api-key": "relay-secret"}),
            ("/?from_seq=abc", {"x-api-key": "relay-secret"}),
            ("/?from_seq=1", {"x-api-key": "relay-secret"}),
        ]:
            try:
                async with connect(url + path, additional_headers=headers) as ws:
                    answers.append(json.loads(await ws.recv())["type"])
                    answers.append(seq_of(await ws.recv()))
            except InvalidStatus as exc:
                answers.append(exc.response.status_code)
        return answers

    with ScriptedFeed([Send.cmds(1, 50)]) as feed:
        archive = tmp_path / "archive"
        log = tmp_path / "record.log"
        args = ("--serve-api-key-env", "SERVE_KEY")
        with Recording(feed.url, archive, log, *args) as recording:
            assert asyncio.run(statuses(recording.url)) == [401, 401, 400, 400, "connected", 1]
            recording.stop()
    assert "relay-secret" not in log.read_text()

    result = replica("record", "ws://127.0.0.1:9", tmp_path / "b", "--serve-host", "0.0.0.0")
    assert result.returncode == 2
    assert "--serve-host is for the clients of --serve PORT" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "b").exists()

    with socket.socket() as taken:  # a port already in use: exit 1, said in one line
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = replica("record", "ws://127.0.0.1:9", tmp_path / "c", "--serve", port)
    assert result.returncode == 1
    assert result.stderr.startswith(f"replica: error: cannot serve on 127.0.0.1:{port} (--serve)")
    assert len(result.stderr.splitlines()) == 1
    assert json.loads(result.stdout.splitlines()[-1])["exit_code"] == 1


def test_a_client_that_stops_reading_gets_1013_while_the_archive_and_others_keep_up(
    tmp_path: Path,
) -> None:
    """Commands of 16 KiB fill the stalled client's socket and buffers; it is closed with 1013,
    and the recording and a client beside it get every command."""
    go = threading.Event()
    last = 3000
    big = tuple(frame(seq, raw=bytes([seq % 251]) * 16384) for seq in range(1, last + 1))
    archive = tmp_path / "archive"
    log = tmp_path / "record.log"

    async def clients(url: str) -> tuple[int, list[int]]:
        async with stalled_and_reader(url) as (stalled, reader):
            go.set()
            seqs = await read_through(reader, last)
            return await close_code(stalled, log), seqs

    feed = ScriptedFeed([WaitFor(go), Send(big)], compression=None)
    with feed, Recording(feed.url, archive, log) as recording:
        code, seqs = asyncio.run(clients(recording.url))
        summary = recording.stop()
    assert code == 1013
    assert seqs == list(range(1, last + 1)) == ledger(archive)
    assert summary["appended"] == last


def test_after_a_kill_9_clients_resume_from_their_last_seq_and_see_the_restart_gap(
    tmp_path: Path,
) -> None:
    """The feed streams on (its seq follows wall time) while the recorder is down: the
    restart's gap is in the ledger, and each client's seqs jump over it, losing nothing else."""
    rate = 1000.0
    archive = tmp_path / "archive"
    log = tmp_path / "record.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def attached(url: str, starts: dict[str, int | None]) -> dict[str, list[int]]:
        """Reads until the connection drops; returns each client's seqs."""
        seqs: dict[str, list[int]] = {name: [] for name in starts}

        async def one(name: str, start: int | None) -> None:
            query = "" if start is None else f"?from_seq={start}"
            async with connect(f"{url}/{query}", max_size=None) as ws:
                await ws.recv()
                try:
                    async with asyncio.timeout(PATIENCE_S):
                        async for text in ws:
                            seqs[name].append(seq_of(text))
                except ConnectionClosed:
                    pass

        await asyncio.gather(*(one(name, start) for name, start in starts.items()))
        return seqs

    def run_attached(url: str, starts: dict[str, int | None], kill: subprocess.Popen) -> dict:
        def killer() -> None:
            time.sleep(1.0)  # the clients are attached and reading
            kill.send_signal(signal.SIGKILL)

        threading.Thread(target=killer, daemon=True).start()
        return asyncio.run(attached(url, starts))

    with ScriptedFeed([Live(rate)], [Live(rate)], compression=None) as feed:
        first = Recording(feed.url, archive, log, port=port)
        with first:
            wait_until(lambda: (live_edge(ArchiveLayout(archive)) or 0) > 0, "a first command")
            before = run_attached(first.url, {"past": 0, "now": None}, first.process)
            first.process.wait(PATIENCE_S)
        assert first.process.returncode == -signal.SIGKILL
        assert all(before.values()), before
        with Recording(feed.url, archive, tmp_path / "again.log", port=port) as second:
            target = feed.live_seq(rate) + 500
            resumed = {name: seqs[-1] + 1 for name, seqs in before.items()}

            async def resume() -> dict[str, list[int]]:
                opened = {
                    name: await connect(f"{second.url}/?from_seq={start}", max_size=None)
                    for name, start in resumed.items()
                }
                for ws in opened.values():
                    await ws.recv()
                got = await asyncio.gather(*(read_through(ws, target) for ws in opened.values()))
                for ws in opened.values():
                    await ws.close()
                return dict(zip(opened, got, strict=True))

            after = asyncio.run(resume())
            second.stop()
    seqs = ledger(archive)
    jumps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
    assert len(jumps) == 1, jumps  # the restart's gap, and no other
    for name in before:
        got = before[name] + after[name]
        start = got[0]
        assert got == [seq for seq in seqs if start <= seq <= target], name
    assert before["past"][0] == seqs[0]


def test_wire_frames_are_the_text_frames_websockets_would_send() -> None:
    """The relay writes prebuilt frames to every client: byte for byte websockets' own, end to
    end, each header sized for its text (7-, 16- and 64-bit lengths)."""
    texts = [b"x" * size for size in (0, 125, 126, 65535, 65536, 3)]
    data, ends = wire_frames(texts)
    expected = [Frame(Opcode.TEXT, text).serialize(mask=False, extensions=[]) for text in texts]
    assert data == b"".join(expected)
    assert ends == list(itertools.accumulate(map(len, expected)))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=12),
    st.integers(min_value=0),
    st.data(),
)
def test_a_live_batch_after_any_seam_is_the_frames_of_the_commands_after_it(
    raws: list[bytes], first_seq: int, data: st.DataObject
) -> None:
    """The seam with the archive sends a batch from its ``skip``-th command: exactly those
    commands' frames, counted as frames and text bytes as the metrics count them."""
    seqs = list(range(first_seq, first_seq + len(raws)))
    times = [seq * 7 for seq in seqs]
    batch = LiveBatch.of((seqs, times, times, times, times, raws))
    skip = data.draw(st.integers(0, len(raws) - 1))
    texts = [
        command_frame(ReplayRecord(seq, t, t, t, t, raw, None)).encode()
        for seq, t, raw in zip(seqs, times, raws, strict=True)
    ][skip:]
    sent = batch.after(skip)
    assert sent.data == wire_frames(texts)[0]
    assert sent.frame_count == len(texts)
    assert sent.text_bytes == sum(map(len, texts))
