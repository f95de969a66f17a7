"""Keeping API keys out of log lines that third-party code writes.

websockets logs request headers at DEBUG, which would print ``x-api-key`` (or a URL with
``api_key``) for anyone who turns debug logging on. Shared by the recorder (its own key) and
the replay server, which also sees keys it does not hold: a client's wrong key, or its key for
the live feed. So key-carrying fields are masked whatever their value, and the known secret
wherever it appears.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_KEY_FIELDS = re.compile(r"(x-api-key:\s*|api_key=)[^\s&]+", re.IGNORECASE)


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger for websockets that formats each message and masks keys in it."""

    def __init__(self, logger: logging.Logger, secret: str | None) -> None:
        super().__init__(logger, {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, _KEY_FIELDS.sub(r"\1***", redact(text, self._secret)), **kwargs)
