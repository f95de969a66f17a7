"""``recorder.policy``: what the recorder does when a connection ends, and how long it waits.

The close codes and HTTP statuses are the feed's documented contract (README "Recording"): a
refused key must stop the recorder (retrying cannot help), a deploy must reconnect at once unless
that would be a busy loop, and everything else must back off 1 s doubling to 60 s plus jitter.
Backoff is checked with a seeded ``random.Random`` so the jitter is exact, not a range guess.
"""

from __future__ import annotations

import random

import pytest
from replica.recorder.policy import Action, Backoff, BackoffPolicy, after_close, after_rejection

DEFAULT_DELAYS = [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_policy_violation_close_stops_whatever_the_health():
    assert after_close(1008, healthy=True) is Action.STOP
    assert after_close(1008, healthy=False) is Action.STOP


@pytest.mark.parametrize("code", [1000, 1001])
def test_deploy_close_reconnects_at_once_after_a_healthy_connection(code):
    assert after_close(code, healthy=True) is Action.RECONNECT_NOW


@pytest.mark.parametrize("code", [1000, 1001])
def test_deploy_close_backs_off_after_a_connection_that_delivered_nothing(code):
    assert after_close(code, healthy=False) is Action.BACKOFF


@pytest.mark.parametrize("code", [1011, 1013, None, 1006, 1002, 4000])
@pytest.mark.parametrize("healthy", [True, False])
def test_other_closes_and_dropped_connections_back_off(code, healthy):
    assert after_close(code, healthy=healthy) is Action.BACKOFF


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_on_the_upgrade_stops(status):
    assert after_rejection(status) is Action.STOP


@pytest.mark.parametrize("status", [500, 502, 503, 429, 404])
def test_other_upgrade_rejections_back_off(status):
    assert after_rejection(status) is Action.BACKOFF


def test_default_backoff_doubles_from_one_second_to_a_sixty_second_cap_plus_jitter():
    backoff = Backoff(BackoffPolicy(), random.Random(7))
    twin = random.Random(7)
    for base in DEFAULT_DELAYS:
        delay = backoff.next_delay()
        assert base <= delay <= base + 1, f"{delay} is not {base} s plus at most 1 s of jitter"
        assert delay == base + twin.uniform(0, 1)


def test_reset_starts_again_from_the_initial_delay():
    backoff = Backoff(BackoffPolicy(), random.Random(3))
    twin = random.Random(3)
    for base in DEFAULT_DELAYS[:4]:
        assert backoff.next_delay() == base + twin.uniform(0, 1)
    backoff.reset()
    for base in DEFAULT_DELAYS:
        assert backoff.next_delay() == base + twin.uniform(0, 1)


def test_custom_policy_without_jitter_is_exact():
    backoff = Backoff(BackoffPolicy(initial=0.01, cap=0.05, jitter=0))
    assert [backoff.next_delay() for _ in range(6)] == [0.01, 0.02, 0.04, 0.05, 0.05, 0.05]
    backoff.reset()
    assert backoff.next_delay() == 0.01


def test_initial_above_the_cap_is_capped():
    backoff = Backoff(BackoffPolicy(initial=10, cap=3, jitter=0))
    assert [backoff.next_delay() for _ in range(3)] == [3, 3, 3]


def test_policy_is_keyword_only_and_immutable():
    with pytest.raises(TypeError):
        BackoffPolicy(1.0)  # type: ignore[misc]
    policy = BackoffPolicy()
    with pytest.raises(AttributeError):
        policy.cap = 1.0  # type: ignore[misc]
