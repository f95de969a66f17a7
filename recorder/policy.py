"""What to do when a connection ends: the feed docs' close codes as a pure decision.

1000/1001 mean a deploy: reconnect at once, unless the connection delivered nothing new, in which
case a server closing straight away would make an immediate retry a busy loop. 1008 and an HTTP
401/403 on the upgrade mean the key is refused: stop. Anything else (1011, 1013, a dropped TCP
connection, a refused connect) backs off exponentially with jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    RECONNECT_NOW = "reconnect now"
    BACKOFF = "back off"
    STOP = "stop"


POLICY_VIOLATION = 1008
_DEPLOY_CODES = frozenset({1000, 1001})
AUTH_STATUSES = frozenset({401, 403})


def after_close(code: int | None, *, healthy: bool) -> Action:
    """``code`` is None when the TCP connection dropped without a close frame."""
    if code == POLICY_VIOLATION:
        return Action.STOP
    if code in _DEPLOY_CODES and healthy:
        return Action.RECONNECT_NOW
    return Action.BACKOFF


def after_rejection(status: int) -> Action:
    return Action.STOP if status in AUTH_STATUSES else Action.BACKOFF


@dataclass(frozen=True, kw_only=True)
class BackoffPolicy:
    initial: float = 1.0
    cap: float = 60.0
    jitter: float = 1.0


class Backoff:
    """Delays of ``initial`` doubling to ``cap``, each plus uniform jitter; ``reset`` after a
    healthy connection starts again from ``initial``."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        policy = self._policy
        base = min(policy.initial * 2.0**self._attempt, policy.cap)
        if base < policy.cap:
            self._attempt += 1
        return base + self._rng.uniform(0, policy.jitter)

    def reset(self) -> None:
        self._attempt = 0
