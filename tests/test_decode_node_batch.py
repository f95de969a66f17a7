"""A regular block read a type at a time (``node_batch``) gives exactly the rows it gives read
action by action, and a mainnet-shaped block is read that way; and no garbage collection walks
a batch's objects while it decodes.

The batched path is there for speed alone, so the general path is its oracle: over valid and
broken blocks (hypothesis), either ``batched_rows`` declines the block, or its ``actions`` and
fact rows equal, value for value, those the general path adds, and the general path found
nothing wrong with any action.
"""

from __future__ import annotations

import copy
import gc
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from replica.decoder.core import Decoder
from replica.decoder.node import NodeColumns
from replica.decoder.node_batch import batched_rows
from replica.decoder.node_frame import NotABlock, TypedBlock, read_block
from replica.schemas.errors import UsageError
from replica.schemas.nodetime import block_time_ns

from fixtures.make_feed import START_TS_MS, mainnet_block
from tests.test_decode_properties import PROPERTY, TEMPLATE_BLOCKS, _break_somewhere

SEQ = 9


def _mainnet_docs() -> list[dict[str, Any]]:
    rng = random.Random(11)
    return [
        json.loads(mainnet_block(rng, START_TS_MS + 70 * i, 990_612_480 + i, 12)) for i in range(4)
    ]


MAINNET_DOCS = _mainnet_docs()


def both_ways(payload: bytes) -> tuple[Any, NodeColumns] | None:
    """The batched rows of a block (None where declined) and the general path's NodeColumns;
    None if the payload is not a block the batched path may take."""
    try:
        block = read_block(payload)
    except NotABlock:
        return None
    if not isinstance(block, TypedBlock):
        return None
    time_ms = block_time_ns(block.abci_block.time) // 1_000_000
    general = NodeColumns()
    general._payloads[SEQ] = (0, len(payload))  # what add() registers, for the notes
    general._add_actions(SEQ, time_ms, block)
    return batched_rows(block, SEQ, time_ms), general


def check_same_rows(doc: dict[str, Any]) -> bool:
    """Asserts the batched rows are the general path's; returns whether the batch took it."""
    found = both_ways(json.dumps(doc).encode())
    if found is None:
        return False
    batched, general = found
    if batched is None:
        return False
    actions, facts = batched
    assert not general.undecoded, "batched a block the general path found faults in"
    assert actions == general.actions
    assert facts == {table: rows for table, rows in general.facts.items() if rows}
    return True


@st.composite
def hot_blocks(draw: Callable[..., Any]) -> dict[str, Any]:
    """A small mainnet-shaped block (orders and cancels, all answered), maybe with parts
    broken: statuses, sizes, responses, users, anything."""
    doc = copy.deepcopy(draw(st.sampled_from(MAINNET_DOCS)))
    for _ in range(draw(st.integers(0, 3))):
        _break_somewhere(draw, doc)
    return doc


def test_a_mainnet_block_is_read_a_type_at_a_time() -> None:
    rng = random.Random(3)
    doc = json.loads(mainnet_block(rng, START_TS_MS, 990_612_480))
    assert check_same_rows(doc)


def test_every_template_block_reads_the_same_either_way() -> None:
    taken = [check_same_rows(copy.deepcopy(doc)) for doc in TEMPLATE_BLOCKS + MAINNET_DOCS]
    assert sum(taken) >= len(MAINNET_DOCS)


@PROPERTY
@given(hot_blocks())
def test_a_hot_block_reads_the_same_either_way(doc: dict[str, Any]) -> None:
    check_same_rows(doc)


@PROPERTY
@given(st.sampled_from(TEMPLATE_BLOCKS), st.data())
def test_any_broken_block_reads_the_same_either_way(template: dict[str, Any], data) -> None:
    doc = copy.deepcopy(template)
    for _ in range(data.draw(st.integers(1, 3))):
        _break_somewhere(data.draw, doc)
    check_same_rows(doc)


def _collections_during(decode: Callable[[], Any]) -> int:
    """How many times the cyclic garbage collector ran while ``decode`` did."""
    runs: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(phase)

    gc.callbacks.append(count)
    try:
        decode()
    finally:
        gc.callbacks.remove(count)
    return len(runs)


def test_the_collector_is_off_while_a_batch_decodes_and_on_again_after() -> None:
    """A busy block's tens of thousands of objects would otherwise be walked by every
    collection; after the batch (even one that fails) the collector is as it was."""
    payloads = [mainnet_block(random.Random(5), START_TS_MS, 990_612_480, 300)]
    decoder = Decoder()
    assert gc.isenabled()
    # at most one, when the collector is back on and finds the count of new objects high
    assert _collections_during(lambda: decoder.decode([1], [START_TS_MS], payloads)) <= 1
    assert gc.isenabled()
    with pytest.raises(UsageError):
        decoder.decode([1, 2], [START_TS_MS], payloads)
    assert gc.isenabled()
    gc.disable()
    try:
        decoder.decode([1], [START_TS_MS], payloads)
        assert not gc.isenabled()
    finally:
        gc.enable()
