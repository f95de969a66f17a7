"""What makes busy node blocks fast must not change a row. Node blocks of a batch are turned
into columns a few megabytes of JSON at a time, so the Python rows held at once stay bounded by
a chunk however many busy blocks a row group has, and the tables are the same rows in the same
order whatever the chunk. The block's frame is read with each signed action's nonce, vault and
expiry typed, and the rows are those of the frame that leaves them raw."""

from __future__ import annotations

import json
import random

import msgspec
import pytest
from replica.decoder import core, node_frame
from replica.decoder.core import Decoder
from replica.decoder.node import NodeColumns

from fixtures.golden_node import mangled_actions, multi_sig, order_outcomes
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


def _fields_fine_actions_not() -> bytes:
    """Every nonce, vault and expiry readable, but actions without a type, of a type that is not
    text, not an object, not UTF-8 inside, and a multiSig with a vault: the typed frame reads
    the block, each such action is read value by value."""
    nonce = {"nonce": 7, "vaultAddress": "0xAB" + "0" * 38, "expiresAfter": 9}
    actions = [
        {"action": {"cancels": []}, **nonce},
        {"action": {"type": 5}, **nonce},
        {"action": "not an object", **nonce},
        {"action": {"type": "noop"}, "nonce": None},
        json.loads(multi_sig())["abci_block"]["signed_action_bundles"][0][1]["signed_actions"][0]
        | nonce,
    ]
    bundle = ["0x" + "cd" * 32, {"signed_actions": actions, "broadcaster": None}]
    block = {"abci_block": {"time": "2026-11-20T23:58:00.123", "round": 5,
                            "signed_action_bundles": [bundle]}, "resps": None}  # fmt: skip
    return json.dumps(block).encode().replace(b'"noop"', b'"no\xffop"')


@pytest.mark.parametrize(
    "payload",
    [_fields_fine_actions_not(), mangled_actions(), multi_sig(), order_outcomes()],
    ids=["fields-fine", "mangled", "multisig", "orders"],
)
def test_the_typed_frame_reads_as_the_raw_one(
    payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = Decoder().decode_one(1, 2, payload)

    def untyped(payload: bytes) -> None:
        raise msgspec.ValidationError("the raw frame, as before")

    monkeypatch.setattr(node_frame, "_decode_typed_block", untyped, raising=False)
    assert Decoder().decode_one(1, 2, payload) == typed
