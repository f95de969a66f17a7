"""Rules for the feed URL, and the forms of it that are safe to show."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from replica.schemas.errors import UsageError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Refuse URLs the recorder must not use: plaintext off loopback, or credentials inside."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(f"feed URL {public_url(url)!r} must be ws://HOST or wss://HOST")
    if parts.username is not None or parts.password is not None:
        raise UsageError("feed URL must not carry credentials; give the API key by file or env")
    if any(name == "api_key" for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise UsageError(
            "feed URL must not carry api_key; use --api-key-env or --api-key-file, "
            "and --auth query to send it in the URL"
        )
    if parts.scheme == "ws" and not is_loopback(parts.hostname):
        raise UsageError(
            f"feed URL {public_url(url)!r} is plaintext ws://; use wss:// "
            "(ws:// is allowed only for loopback hosts)"
        )


def with_api_key(url: str, api_key: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("api_key", api_key)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def public_url(url: str) -> str:
    """Scheme, host, port and path only: what logs, errors and file metadata may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
