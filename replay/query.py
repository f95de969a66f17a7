"""What a client of the replay server asks for, from its URL's query string.

``?from_seq=&to_seq=&start=&end=&speed=`` select and pace the connection's own replay, with
the meanings of ``replica replay``'s options; times are ISO 8601 with a zone (``Z``), speed a
number of at least 1e-06 or ``max``. ``api_key`` is the feed's query authentication and is left
to the key check. Anything else, a parameter given twice, or a value longer than any valid one
(``MAX_VALUE_CHARS``) is refused: a misspelt parameter would otherwise silently replay
something other than what was asked, and a huge value would be echoed into the log and reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs

from replica.replay.schedule import parse_speed
from replica.replay.selection import SEQ_MAX, Selection, utc_ms
from replica.schemas.errors import UsageError

PARAMETERS = ("from_seq", "to_seq", "start", "end", "speed")
MAX_VALUE_CHARS = 64  # a seq has at most 19 digits, a time with its zone about 35 characters


@dataclass(frozen=True)
class ReplayQuery:
    selection: Selection
    speed: float | None  # None: max


def parse_query(query: str, default_speed: float | None) -> ReplayQuery:
    values = parse_qs(query, keep_blank_values=True)
    for name, given in values.items():
        if name not in PARAMETERS and name != "api_key":
            raise UsageError(
                f"unknown query parameter {name!r}; use any of {', '.join(PARAMETERS)}"
            )
        if len(given) > 1:
            raise UsageError(f"query parameter {name} is given {len(given)} times")
        if name != "api_key" and len(given[0]) > MAX_VALUE_CHARS:
            raise UsageError(
                f"query parameter {name} is {len(given[0])} characters long; "
                f"no valid value is longer than {MAX_VALUE_CHARS}"
            )
    text = {name: given[0] for name, given in values.items()}
    selection = Selection(
        from_seq=_seq(text, "from_seq"),
        to_seq=_seq(text, "to_seq"),
        start_ms=_time(text, "start"),
        end_ms=_time(text, "end"),
    )
    speed = default_speed if "speed" not in text else parse_speed(text["speed"])
    return ReplayQuery(selection, speed)


def _seq(text: dict[str, str], name: str) -> int | None:
    if name not in text:
        return None
    if not (text[name].isascii() and text[name].isdecimal()):
        raise UsageError(
            f"query parameter {name}={text[name]!r} is not a seq (an integer from 0 to {SEQ_MAX})"
        )
    return int(text[name])


def _time(text: dict[str, str], name: str) -> int | None:
    if name not in text:
        return None
    try:
        moment = datetime.fromisoformat(text[name])
    except ValueError:
        raise UsageError(
            f"query parameter {name}={text[name]!r} is not an ISO 8601 time such as "
            "2026-11-22T00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(f"query parameter {name}={text[name]!r} has no time zone; add Z")
    return utc_ms(name, moment)
