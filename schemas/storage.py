"""An ARCHIVE argument as a filesystem and a root in it: a local path or ``s3://bucket/prefix``.

Why ``pyarrow.fs``: pyarrow is already a dependency and ships an S3 client (the AWS SDK), so a
bucket needs no extra install; its output streams upload in parts, so a big file is multipart
without our code choosing part sizes, and its retry strategy backs off with jitter. DuckDB,
which wants an fsspec filesystem, is handed this same client through fsspec's thin wrapper
(``replica.sql_storage``), so there is one S3 client and one credential chain.

Credentials come only from the AWS SDK's standard chain (``AWS_ACCESS_KEY_ID``/
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and the shared files, an instance or task role): never
from an argument, so they never appear in a process list, and never in a URL
(``s3://key:secret@bucket`` is refused). The endpoint of an S3-compatible store is the explicit
``endpoint_url`` or else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; the region
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1`` (what S3-compatible stores expect).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow.fs as pafs
from replica.schemas.errors import ArchiveError, UsageError

S3_SCHEME = "s3"
# A request that fails for a transient reason (a 5xx, a throttle, a dropped connection) is
# tried this many times in all, with the SDK's exponential backoff and full jitter: the AWS
# SDKs' standard default. Six made a wrong endpoint a 16 s wait for its one line; what must
# outlast an outage retries on its own (the recorder's uploader, forever, at most every 10 s).
S3_ATTEMPTS = 3


class StorageUrlError(UsageError):
    """An ARCHIVE or DEST that names no store this build can open."""


class StorageError(ArchiveError):
    """A store refused or failed a request (credentials, endpoint, network)."""


def masked(text: str) -> str:
    """``text`` on one line, with any AWS secret of the environment masked: pyarrow's messages
    name the bucket, key and AWS error but no credential, and this keeps it so."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


# What pyarrow's AWS errors say, and what to check for each.
_HINTS = {
    ("ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "Forbidden"): (
        "check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    ),
    ("NETWORK_CONNECTION", "Could not resolve host"): (
        "check the endpoint (AWS_ENDPOINT_URL or --endpoint-url)"
    ),
}


def store_error(location: Location, exc: OSError) -> StorageError:
    """A store's error as one line naming the location, with what to check."""
    text = masked(str(exc)).rstrip(". ")
    hints = [hint for words, hint in _HINTS.items() if any(word in text for word in words)]
    return StorageError(f"{location.url}: {text}" + "".join(f"; {hint}" for hint in hints[:1]))


@dataclass(frozen=True)
class Location:
    """Where an archive is: ``root`` is a path inside ``filesystem`` (``bucket/prefix`` on S3,
    an absolute path locally), ``url`` what to call it in messages (it never holds a secret);
    ``endpoint`` the S3 endpoint it was opened with, if any, so that a cluster worker can open
    the same store (it holds no secret either: workers take credentials from their own chain)."""

    filesystem: pafs.FileSystem
    root: str
    url: str
    endpoint: str | None = None

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def path(self, relative: str) -> str:
        """The filesystem path of ``relative`` (``/``-separated) under the root."""
        return f"{self.root}/{relative}" if self.root else relative


def is_remote(archive: str | os.PathLike[str]) -> bool:
    """Whether ``archive`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in os.fspath(archive)


def locate(archive: str | os.PathLike[str], endpoint_url: str | None = None) -> Location:
    """The filesystem and root of ``archive``; opens no connection, so a wrong endpoint or
    credential shows at the first read or write."""
    text = os.fspath(archive)
    if not is_remote(text):
        return Location(pafs.LocalFileSystem(), os.path.abspath(text), text)
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise StorageUrlError(
            f"{parts.scheme}://{parts.hostname}/...: credentials in a URL are refused (they would "
            "show in process lists and logs); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "or AWS_PROFILE instead"
        )
    if parts.scheme != S3_SCHEME:
        raise StorageUrlError(f"{text}: only local paths and s3://bucket/prefix are supported")
    if not parts.hostname:
        raise StorageUrlError(f"{text}: an S3 URL names a bucket, as s3://bucket/prefix")
    root = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    endpoint = _endpoint(endpoint_url)
    return Location(s3_filesystem(endpoint), root, f"s3://{root}", endpoint)


def _endpoint(endpoint_url: str | None) -> str | None:
    return (
        endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


def s3_filesystem(endpoint_url: str | None = None) -> pafs.S3FileSystem:
    """An S3 client with the credential chain, endpoint and region described above."""
    endpoint = _endpoint(endpoint_url)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    options: dict[str, object] = {
        "region": region,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS),
    }
    if endpoint:
        scheme = urlsplit(endpoint).scheme
        if scheme not in ("http", "https"):
            raise StorageUrlError(f"endpoint {endpoint}: give it as http://HOST:PORT or https://")
        options["endpoint_override"] = endpoint
        options["scheme"] = scheme
        # S3-compatible stores (MinIO, SeaweedFS, Ceph) serve buckets as paths, not hostnames.
        options["force_virtual_addressing"] = False
    return pafs.S3FileSystem(**options)
