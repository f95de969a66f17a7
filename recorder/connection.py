"""Opening the feed connection: the key goes to the configured URL and nowhere else.

websockets follows HTTP redirects by itself and, across origins, strips only the standard
credential headers (``Authorization``, ``Cookie``): our ``x-api-key`` would go to whatever host
the ``Location`` names, over plaintext too when the configured URL is a loopback ``ws://``. So
redirects are never followed; the refusal names the target, and the user decides whether to
configure that URL.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin, urlsplit

from replica.recorder import __version__
from replica.recorder.feedurl import is_loopback, public_url, with_api_key
from replica.recorder.quarantine import MAX_FRAME_BYTES
from replica.schemas.redact import RedactingLogger
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


class RedirectRefused(Exception):
    """The feed answered the upgrade with a redirect, which is not followed."""

    def __init__(self, status: int, target: str) -> None:
        super().__init__(
            f"HTTP {status} redirect to {target} on the upgrade, not followed: the API key is "
            "sent only to the configured URL (configure the new URL if you trust it)"
        )


class _KeyKeepingConnect(connect):
    def process_redirect(self, exc: Exception) -> Exception | str:
        """Turn every redirect into ``RedirectRefused`` (websockets would follow it)."""
        if isinstance(exc, InvalidStatus) and "Location" in exc.response.headers:
            status = exc.response.status_code
            if 300 <= status < 400:
                target = urljoin(self.uri, exc.response.headers["Location"])
                return RedirectRefused(status, public_url(target))
        return exc


def open_feed(
    url: str,
    *,
    api_key: str | None,
    auth: str,
    ping_interval: float,
    ping_timeout: float,
    close_timeout: float,
) -> connect:
    """An unopened connection to ``url`` (``async with`` it), carrying the key as ``auth`` says."""
    headers = {}
    if api_key and auth == "query":
        url = with_api_key(url, api_key)
    elif api_key:
        headers["x-api-key"] = api_key
    return _KeyKeepingConnect(
        url,
        additional_headers=headers,
        user_agent_header=f"replica/{__version__}",
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_size=MAX_FRAME_BYTES,
        proxy=None if is_loopback(urlsplit(url).hostname or "") else True,
        logger=RedactingLogger(logging.getLogger("websockets.client"), api_key),
    )
