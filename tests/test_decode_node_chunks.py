"""Node blocks of a batch are turned into columns a few megabytes of JSON at a time, so the
Python rows held at once stay bounded by a chunk however many busy blocks a row group has, and
the tables are the same rows in the same order whatever the chunk."""

from __future__ import annotations

import random

import pytest
from replica.decoder import core
from replica.decoder.core import Decoder
from replica.decoder.node import NodeColumns

from fixtures.golden_node import mangled_actions, order_outcomes
from fixtures.make_feed import START_TS_MS, mainnet_block, node_block, protobuf_command


def _batch() -> tuple[list[int], list[int], list[bytes]]:
    """Busy blocks among protobuf commands, small blocks, a mangled block and not-a-block."""
    rng = random.Random(5)
    payloads = [mainnet_block(rng, START_TS_MS + 70 * i, 1_000 + i, actions=40) for i in range(6)]
    payloads[2:2] = [protobuf_command(rng, START_TS_MS), b'{"abci_block": 1}', mangled_actions()]
    payloads += [node_block(rng, START_TS_MS + 900, 2_000), order_outcomes()]
    return list(range(10, 10 + len(payloads))), [START_TS_MS] * len(payloads), payloads


def test_chunks_give_the_same_tables_and_hold_one_chunk_of_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seqs, ts_ms, payloads = _batch()
    whole = Decoder().decode(seqs, ts_ms, payloads)
    assert {"blocks", "actions", "orders", "cancels", "undecoded"} <= set(whole)

    held: list[int] = []
    add = NodeColumns.add

    def counting_add(self: NodeColumns, seq: int, ts: int, payload: bytes) -> None:
        add(self, seq, ts, payload)
        held.append(len(self.actions))

    monkeypatch.setattr(NodeColumns, "add", counting_add)
    monkeypatch.setattr(core, "NODE_CHUNK_BYTES", 1, raising=False)
    chunked = Decoder().decode(seqs, ts_ms, payloads)

    assert chunked.keys() == whole.keys()
    for name, table in whole.items():
        assert chunked[name].equals(table), name
    # One block's rows at a time: never more actions than the busiest block has.
    assert max(held) == 40
