"""``replica replay``, ``replica serve`` and ``replica verify --digest`` as scripts run them:
real subprocesses, exit codes, stdout and stderr; and the proof of the whole loop, a served
archive recorded again by ``replica record`` into an archive that holds the same commands.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from replica.schemas.archive import ArchiveLayout
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import PATIENCE_S, raw_rows, replica, table_rows
from tests.replayarchives import FEED_GAP, FEED_LAST_SEQ, FEED_LINES, record_fixture_feed
from tests.served import Served, wait_for_text

SECRET = "ak_live_REPLAY_CLI_SECRET_7"
GAP_WARNING = (
    f"replica: warning: seqs {FEED_GAP[0]}-{FEED_GAP[1]} are missing (5 seqs, cause jump)\n"
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_fixture_feed(tmp_path_factory.mktemp("replay") / "archive")


def test_replay_writes_the_feeds_frames_identically_every_run(archive: Path) -> None:
    first, second = replica("replay", archive), replica("replay", archive)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "\n".join(FEED_LINES) + "\n"
    assert second.stdout == first.stdout
    assert first.stderr == GAP_WARNING


def test_replay_digest_matches_verify_digest_for_the_same_range(archive: Path) -> None:
    for selection in ([], ["--from-seq", "482911000", "--to-seq", "482912000"]):
        replayed = replica("replay", archive, "--digest", *selection)
        verified = replica("verify", archive, "--digest", *selection)
        assert replayed.returncode == 0 and verified.returncode == 0, verified.stdout
        digest = replayed.stdout.strip()
        assert re.fullmatch(r"sha256:[0-9a-f]{64} \d+ commands", digest)
        assert verified.stdout.splitlines()[-1] == digest
        assert "commands, seqs 482910000-482913004" in verified.stdout.splitlines()[-2]
        assert replica("replay", archive, "--digest", *selection).stdout.strip() == digest
    whole = replica("replay", archive, "--digest").stdout
    part = replica("replay", archive, "--digest", "--to-seq", "482910010").stdout
    assert whole.endswith(" 3000 commands\n") and part.endswith(" 11 commands\n")


def test_a_paced_replay_flushes_each_frame_when_due(archive: Path) -> None:
    """At speed 0.001 the second command is due 52 s after the first: the first line must be
    readable long before then, and before the process ends."""
    with subprocess.Popen(
        [sys.executable, "-m", "replica", "replay", archive, "--speed", "0.001"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout.readline() == FEED_LINES[0] + "\n"
            assert process.poll() is None
        finally:
            process.kill()


def test_a_reader_that_leaves_ends_the_replay_quietly(archive: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "replica", "replay", archive],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout.readline() == FEED_LINES[0] + "\n"
        process.stdout.close()  # like `| head -1`
        assert process.wait(PATIENCE_S) == 0
        assert "Traceback" not in process.stderr.read()


def test_fail_on_gap_stops_at_the_gap_with_exit_1(archive: Path) -> None:
    result = replica("replay", archive, "--fail-on-gap")
    assert result.returncode == 1
    assert result.stdout == "\n".join(FEED_LINES[:1500]) + "\n"
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"replica: error: archive {archive} is missing seqs {FEED_GAP[0]}-{FEED_GAP[1]}"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "{a}", "--speed", "0"], "speed '0' is not a number of at least 1e-06 or max"),
        (["replay", "{a}", "--speed", "fast"], "speed 'fast' is not a number of at least"),
        (["replay", "{a}", "--speed", "1e-12"], "speed '1e-12' is not a number of at least 1e-06"),
        (["replay", "{a}", "--from-seq", "5", "--to-seq", "3"], "from_seq 5 is above to_seq 3"),
        (["replay", "{a}", "--from-seq", "-5"], "'--from-seq'"),
        (["replay", "{a}", "--to-seq", "9" * 25], "to_seq is above 9223372036854775807"),
        (["replay", "{a}", "--start", "2026-11-20T00:00"], "has no time zone"),
        (["replay", "{a}", "--clock", "wall"], "'wall' is not one of"),
        (["replay", "{a}", "--precise"], "precise pacing needs a speed"),
        (["replay", "{a}/nope"], "does not exist"),
        (["verify", "{a}", "--to-seq", "5"], "select what --digest covers"),
        (["serve", "{a}"], "Missing option '--port'"),
        (["serve", "{a}", "--port", "0", "--api-key-env", "REPLICA_TEST_UNSET"], "is not set"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(archive: Path, args: list[str], message: str) -> None:
    result = replica(*(arg.format(a=archive) for arg in args))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("replica: error: ") and result.stderr.count("\n") == 1


def test_serve_checks_the_key_from_the_environment_and_stops_on_sigterm(
    archive: Path, tmp_path: Path
) -> None:
    served = Served(archive, tmp_path, "--api-key-env", "REPLAY_KEY", env={"REPLAY_KEY": SECRET})

    async def clients() -> list[str]:
        with pytest.raises(InvalidStatus, match="401"):
            async with connect(served.url, additional_headers={"x-api-key": "wrong"}):
                pass
        url = f"{served.url}/?to_seq=482910002&speed=max"
        async with connect(url, additional_headers={"x-api-key": SECRET}) as ws:
            return [await ws.recv() for _ in range(4)]

    frames = asyncio.run(clients())
    assert json.loads(frames[0])["type"] == "connected" and frames[1:] == FEED_LINES[:3]
    assert served.stop() == 0
    log = served.log.read_text()
    assert "clients must present the API key" in log and "stopping" in log
    assert SECRET not in log


def test_a_served_archive_recorded_again_holds_the_same_commands(
    archive: Path, tmp_path: Path
) -> None:
    """replica serve -> replica record, both as subprocesses: same seqs, payloads and feed
    timestamps, the same gap, and the same digest."""
    copy = tmp_path / "copy"
    served = Served(archive, tmp_path)
    try:
        errors = tmp_path / "record.log"
        command = ["record", served.url + "/?speed=max", copy, "--status-seconds", "0.1"]
        with open(errors, "w") as stderr:
            recorder = subprocess.Popen(
                [sys.executable, "-m", "replica", *command],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        wait_for_text(errors, rf"last seq {FEED_LAST_SEQ} ", recorder)
        recorder.send_signal(signal.SIGTERM)
        stdout, _ = recorder.communicate(timeout=PATIENCE_S)
    finally:
        assert served.stop() == 0
    assert recorder.returncode == 0, errors.read_text()
    assert json.loads(stdout.splitlines()[-1])["appended"] == 3000

    def feed_columns(root: Path) -> list[tuple]:
        return [
            (r["seq"], r["ts_ms"], r["ingest_ts_us"], r["publish_ts_us"], r["raw"])
            for r in raw_rows(root)
        ]

    assert feed_columns(copy) == feed_columns(archive)
    gaps = [(g["from_seq"], g["to_seq"], g["cause"]) for g in table_rows(copy / "gaps")]
    assert gaps == [(*FEED_GAP, "jump")]
    assert [s.path.parent.name for s in ArchiveLayout(copy).segments()] == [
        s.path.parent.name for s in ArchiveLayout(archive).segments()
    ]
    digests = [
        replica("verify", root, "--digest").stdout.splitlines()[-1] for root in (archive, copy)
    ]
    assert digests[0] == digests[1]


def test_help_documents_every_replay_and_serve_option() -> None:
    replay_help = " ".join(replica("replay", "--help").stdout.split())
    for option in ("--from-seq", "--to-seq", "--start", "--end", "--speed", "--clock"):
        assert option in replay_help
    for option in ("--precise", "--fail-on-gap", "--digest", "not the frames"):
        assert option in replay_help
    serve_help = " ".join(replica("serve", "--help").stdout.split())
    for option in ("--port", "--host", "--api-key-env", "--api-key-file", "1013", "400", "401"):
        assert option in serve_help
    assert "--digest" in replica("verify", "--help").stdout
    assert {"replay", "serve"} <= set(replica("--help").stdout.split())
