"""Keeping the API key out of log lines that third-party code writes.

websockets logs request headers at DEBUG, which would print ``x-api-key`` (or a URL with
``api_key``) for anyone who turns debug logging on.
"""

from __future__ import annotations

import logging


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class RedactingLogger(logging.LoggerAdapter):
    """A logger for websockets that formats each message and masks the secret in it."""

    def __init__(self, logger: logging.Logger, secret: str | None) -> None:
        super().__init__(logger, {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, redact(text, self._secret), **kwargs)
