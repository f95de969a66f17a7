"""``replay(decode=True)``: the replayer hands each command to the decoder ``replica decode``
uses, so a backtest sees the same rows the decoded tables hold."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest
from replica.decoder.core import Decoder

import replica
from tests.rawarchive import feed_rows, write_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decode") / "archive"
    write_archive(root, feed_rows())
    return root


def test_decoded_replay_yields_the_rows_of_the_decoded_tables(archive: Path):
    rows = feed_rows()[:400]
    expected = Decoder().decode(
        [r["seq"] for r in rows], [r["ts_ms"] for r in rows], [r["raw"] for r in rows]
    )
    replayed: dict[str, list[dict]] = defaultdict(list)
    items = list(replica.open(archive).replay(to_seq=rows[-1]["seq"], decode=True))
    assert [item.seq for item in items] == [r["seq"] for r in rows]
    for item, row in zip(items, rows, strict=True):
        assert isinstance(item, replica.DecodedCommand)
        assert item.record.raw == row["raw"] and item.record.ts_ms == row["ts_ms"]
        for table, table_rows in item.rows.items():
            replayed[table] += table_rows
    assert replayed == {name: table.to_pylist() for name, table in expected.items()}


def test_gaps_pass_through_a_decoded_replay_and_async_for_agrees(archive: Path):
    replay = replica.open(archive).replay(from_seq=482_911_495, to_seq=482_911_510, decode=True)
    items = list(replay)
    gaps = [item for item in items if isinstance(item, replica.ReplayGap)]
    assert [(g.from_seq, g.to_seq) for g in gaps] == [(482_911_500, 482_911_504)]

    async def collect() -> list:
        return [item async for item in replay]

    assert asyncio.run(collect()) == items
