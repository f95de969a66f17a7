"""The SQL views over decoded node tables: ``deposit_events`` (one row per deposit, however
many validators voted for it) and ``action_coverage`` (per day and action type: actions, those
with facts, those with undecoded rows). Real archive, real ``replica decode`` and ``replica
sql`` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.golden_node import (
    deposit_votes,
    mangled_actions,
    oracle_prices,
    withdrawal_votes,
    without_responses,
)
from tests.conftest import replica as run_replica
from tests.rawarchive import payload_rows, write_archive


def _sql(archive: Path, query: str) -> list[dict]:
    result = run_replica("sql", archive, query, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _decoded(tmp_path: Path, payloads: list[bytes]) -> Path:
    archive = tmp_path / "archive"
    write_archive(archive, payload_rows(payloads, start_ts_ms=1_750_733_796_000))
    result = run_replica("decode", archive)
    assert result.returncode == 0, result.stderr
    return archive


def test_a_deposit_voted_for_by_three_validators_counts_once(tmp_path: Path) -> None:
    archive = _decoded(tmp_path, [deposit_votes(), deposit_votes()])  # the same votes again
    events = _sql(
        archive,
        "SELECT eth_event_index, depositor, amount_usd, votes, validators, disagree "
        "FROM deposit_events ORDER BY eth_event_index",
    )
    assert [
        (e["eth_event_index"], e["amount_usd"], e["votes"], e["validators"]) for e in events
    ] == [
        (0, 15.147247, 6, 3),
        (3, 2.0, 2, 1),
    ]
    assert not any(e["disagree"] for e in events)
    (total,) = _sql(archive, "SELECT sum(amount_usd) AS usd FROM deposit_events")
    assert total["usd"] == 15.147247 + 2.0


def test_action_coverage_shows_actions_with_facts_and_undecoded_per_type(tmp_path: Path) -> None:
    archive = _decoded(tmp_path, [mangled_actions(), oracle_prices()])
    rows = _sql(archive, "SELECT kind, actions, with_facts, undecoded FROM action_coverage")
    coverage = {row["kind"]: (row["actions"], row["with_facts"], row["undecoded"]) for row in rows}
    assert coverage == {
        None: (4, 0, 4),
        "cancel": (4, 4, 4),
        "order": (1, 0, 1),
        "usdClassTransfer": (1, 1, 0),
        "SetGlobalAction": (1, 1, 0),
        "perpDeploy": (2, 1, 0),
    }


def test_stats_show_the_share_of_blocks_with_responses_and_coverage(tmp_path: Path) -> None:
    """A node writes responses only with --replica-cmds-style actions-and-responses: stats
    say how many blocks had them, and per action type what the decoder made of the actions."""
    archive = _decoded(tmp_path, [deposit_votes(), without_responses(), mangled_actions()])
    result = run_replica("stats", archive, "--json")
    assert result.returncode == 0, result.stderr
    (day,) = json.loads(result.stdout)
    assert day["responses_share"] == 2 / 3
    assert day["action_coverage"]["VoteEthDepositAction"] == [4, 4, 0]
    assert day["action_coverage"]["cancel"] == [5, 5, 4]
    assert "deposit_events" not in day["decoded_rows"]  # a view over deposits, not a table
    table = run_replica("stats", archive)
    assert table.returncode == 0, table.stderr
    lines = [line.split() for line in table.stdout.splitlines()]
    assert [day["date"], "66.7%", "VoteEthDepositAction", "4", "4", "0"] in lines


def test_a_withdrawal_is_one_row_per_stage_however_many_validators_signed(tmp_path: Path) -> None:
    archive = _decoded(tmp_path, [withdrawal_votes()])
    events = _sql(
        archive,
        "SELECT kind, withdrawer, nonce, amount_usd, eth_tx_hash, votes, validators "
        "FROM withdrawal_events ORDER BY time_ms, kind",
    )
    stages = [(e["kind"], e["amount_usd"], e["votes"], e["validators"]) for e in events]
    assert sorted(stages) == [
        ("ValidatorSignWithdrawalAction", 99.5, 2, 2),
        ("VoteEthFinalizedWithdrawalAction", 99.5, 1, 1),
        ("withdraw3", 99.5, 1, 1),
    ]
    assert len({(e["withdrawer"], e["nonce"]) for e in events}) == 1  # one withdrawal
