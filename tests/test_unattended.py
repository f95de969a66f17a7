"""The recorder and the server as cron and systemd run them: a missing key is said once and named
when the feed refuses it, a window that recorded nothing fails with its own exit code, and a
server open beyond loopback without a key is warned about."""

from __future__ import annotations

import json
from pathlib import Path

from replica.schemas.errors import NothingRecorded

from tests.conftest import replica
from tests.feedserver import ScriptedFeed, Send
from tests.rawarchive import feed_rows, write_archive

NO_KEY = {"REPLICA_API_KEY": ""}


def _summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_without_a_key_it_says_so_once_and_the_refusal_says_none_was_sent(tmp_path: Path) -> None:
    with ScriptedFeed(api_key="ak_test_secret") as feed:
        result = replica("record", feed.url, tmp_path, "--duration", "30s", env=NO_KEY)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("no API key set (REPLICA_API_KEY or --api-key-file)") == 1
    assert result.stderr.splitlines()[-1] == (
        f"replica: error: authentication was refused by {feed.url} (HTTP 401 on the upgrade); "
        "no API key was sent: set REPLICA_API_KEY or give --api-key-file"
    )
    assert "check that the API key is valid" not in result.stderr


def test_a_window_that_never_connected_exits_5(tmp_path: Path) -> None:
    result = replica("record", "ws://127.0.0.1:9", tmp_path, "--duration", "1s", env=NO_KEY)
    assert result.returncode == NothingRecorded.exit_code == 5, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "replica: error: the recording window ended without connecting to ws://127.0.0.1:9: "
        "nothing recorded"
    )
    summary = _summary(result.stdout)
    assert (summary["ended_by"], summary["exit_code"], summary["appended"]) == (
        "NothingRecorded",
        5,
        0,
    )


def test_a_window_that_received_no_command_exits_5(tmp_path: Path) -> None:
    with ScriptedFeed([Send(())]) as feed:
        result = replica("record", feed.url, tmp_path, "--duration", "2s", env=NO_KEY)
    assert result.returncode == 5, result.stderr
    assert "ended with no new command from" in result.stderr.splitlines()[-1]
    assert _summary(result.stdout)["connections"] >= 1


def test_serve_beyond_loopback_without_a_key_warns(tmp_path: Path) -> None:
    write_archive(tmp_path, feed_rows()[:10])
    # An address of the documentation range: never bound here, so nothing is exposed, but the
    # warning comes before the attempt to listen.
    result = replica("serve", tmp_path, "--host", "192.0.2.1", "--port", "0")
    assert result.returncode == 1
    assert "with no API key: anyone who can reach the port can read it" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("replica: error: cannot listen on 192.0.2.1")
