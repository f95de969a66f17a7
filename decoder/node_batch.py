"""A busy block's actions read a type at a time: one msgspec call for all its orders, one for
its cancels, one for their responses, instead of several Python calls per action.

A mainnet block carries about 1,000 signed actions, nearly all of them ``order``,
``cancelByCloid`` and ``cancel`` (``node_orders.BATCHED``), every ~70 ms; per-action Python
costs more than parsing the JSON. The rows are the ones ``NodeColumns`` makes action by action,
value for value: the same structs read the same JSON, and the same functions turn them into
facts. Only a regular block is read this way: when anything is not as usual (a signed field, an
action or response that does not read, text that is not UTF-8, a ``multiSig``, a bundle answered
by more or fewer responses than it has actions), ``batched_rows`` returns None and the block is
read action by action, which says what is wrong with each.
"""

from __future__ import annotations

from collections import Counter
from itertools import repeat
from operator import itemgetter
from typing import Any

import msgspec
from replica.decoder.node_facts import FACTS_OF_ACTION
from replica.decoder.node_frame import (
    ACTION_ERRORS,
    NULL,
    Response,
    TypedBlock,
    action_types,
    raw_text,
)
from replica.decoder.node_orders import BATCHED, statuses_of
from replica.decoder.node_values import json_array, lower

Rows = list[tuple[Any, ...]]


def batched_rows(block: TypedBlock, seq: int, time_ms: int) -> tuple[Rows, dict[str, Rows]] | None:
    """The block's ``actions`` rows and fact rows (by table) as ``NodeColumns`` has them, or
    None if the block is not regular enough to be read a type at a time."""
    abci = block.abci_block
    bundles = abci.signed_action_bundles
    signed = [action for _, bundle in bundles for action in bundle.signed_actions]
    count = len(signed)
    if block.resps is None:
        users: list[str | None] = [None] * count
        statuses: list[str | None] = [None] * count
        responses: list[msgspec.Raw] = [NULL] * count
    else:
        answers = dict(block.resps.Full)
        results: list[Response] = []
        for bundle_hash, bundle in bundles:
            answered = answers.get(bundle_hash, ())
            if len(answered) != len(bundle.signed_actions):
                return None
            results += answered
        users = [lower(result.user) for result in results]
        statuses = [result.res.status if result.res is not None else None for result in results]
        responses = [result.res.response if result.res is not None else NULL for result in results]
    raws = [action.action for action in signed]
    try:
        kinds = action_types(raws)
        texts = [bytes(raw).decode() for raw in raws]
        response_texts = [raw_text(response) for response in responses]
    except ACTION_ERRORS:
        return None
    if "multiSig" in kinds:
        return None
    facts = _facts(seq, time_ms, abci.round, kinds, raws, users, statuses, responses)
    if facts is None:
        return None
    tables, fact_counts = facts
    places = [
        (bundle_hash.lower(), lower(bundle.broadcaster), bundle.broadcaster_nonce)
        for bundle_hash, bundle in bundles
        for _ in bundle.signed_actions
    ]
    actions = list(
        zip(repeat(seq), range(count), repeat(time_ms), kinds, repeat(abci.round),
            *zip(*places, strict=True), [action.nonce for action in signed],
            [lower(action.vaultAddress) for action in signed],
            [action.expiresAfter for action in signed], users, statuses, response_texts, texts,
            fact_counts, repeat(None))
    )  # fmt: skip
    return actions, tables


def _facts(
    seq: int,
    time_ms: int,
    round_: int | None,
    kinds: list[str],
    raws: list[msgspec.Raw],
    users: list[str | None],
    statuses: list[str | None],
    responses: list[msgspec.Raw],
) -> tuple[dict[str, Rows], list[int]] | None:
    """Each table's fact rows, and each action's number of them; None if an action's facts do
    not read. A rejected action (status "err") placed nothing: none."""
    with_facts = [
        idx for idx, kind in enumerate(kinds) if statuses[idx] != "err" and kind in FACTS_OF_ACTION
    ]
    found: dict[str, list[tuple[int, tuple[Any, ...]]]] = {}  # table: (action idx, values)
    for kind, batched in BATCHED.items():
        of_kind = [idx for idx in with_facts if kinds[idx] == kind]
        if not of_kind:
            continue
        try:
            actions = batched.decode(json_array([raws[idx] for idx in of_kind]))
        except ACTION_ERRORS:
            return None
        positions, values = batched.facts(actions, statuses_of([responses[idx] for idx in of_kind]))
        found.setdefault(batched.table, []).extend(
            zip([of_kind[at] for at in positions], values, strict=True)
        )
    for idx in with_facts:
        if kinds[idx] in BATCHED:
            continue
        handler = FACTS_OF_ACTION[kinds[idx]]
        try:
            facts = list(handler(bytes(raws[idx]), users[idx], responses[idx]))
        except ACTION_ERRORS:
            return None
        for table, fact in facts:
            found.setdefault(table, []).append((idx, fact))
    tables: dict[str, Rows] = {}
    for table, entries in found.items():
        entries.sort(key=itemgetter(0))  # in action order; an action's own, as they came
        tables[table] = [
            (seq, fact_idx, time_ms, kinds[idx], round_, users[idx], *values, idx)
            for fact_idx, (idx, values) in enumerate(entries)
        ]
    counts = [0] * len(kinds)
    for idx, many in Counter(idx for entries in found.values() for idx, _ in entries).items():
        counts[idx] = many
    return tables, counts
