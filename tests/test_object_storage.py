"""``replica sync`` against a real S3-compatible store (SeaweedFS on loopback): a demo archive
up to a bucket and back down, what is and is not copied, idempotence, and credentials that stay
out of every message."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tests.conftest import replica
from tests.objectstore import ACCESS_KEY, SECRET_KEY, ObjectStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("s3demo") / "archive"
    result = replica("demo", archive, timeout=300)
    assert result.returncode == 0, result.stderr
    return archive


def _url(store: ObjectStore, name: str) -> str:
    """A prefix of its own per test, so that tests sharing the store never see each other."""
    return store.fresh_url(name)


def _summary(stdout: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+) files copied, (\d+) skipped, (\d+) bytes\n", stdout)
    assert match, stdout
    copied, skipped, size = match.groups()
    return int(copied), int(skipped), int(size)


def _sealed(archive: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(archive)): path.read_bytes()
        for path in archive.rglob("*")
        if path.is_file()
        and not any(p.startswith(".") for p in path.relative_to(archive).parts)
        and path.relative_to(archive).parts[0] != "spool"
    }


def test_an_archive_synced_up_and_back_verifies_with_the_same_digest(
    demo: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    url, env = _url(object_store, "roundtrip"), object_store.env()
    up = replica("sync", demo, url, env=env)
    assert up.returncode == 0, up.stderr
    copied, skipped, size = _summary(up.stdout)
    assert (copied, skipped) == (len(_sealed(demo)), 0)
    assert size == sum(map(len, _sealed(demo).values()))

    down = tmp_path / "down"
    result = replica("sync", url, down, env=env)
    assert result.returncode == 0, result.stderr
    assert _summary(result.stdout)[:2] == (copied, 0)
    assert _sealed(down) == _sealed(demo)
    assert replica("verify", down).returncode == 0
    digest = replica("replay", demo, "--digest").stdout
    assert digest.startswith("sha256:")
    assert replica("replay", down, "--digest").stdout == digest


def test_a_second_sync_copies_nothing_either_way(
    demo: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    url, env = _url(object_store, "again"), object_store.env()
    files = len(_sealed(demo))
    assert _summary(replica("sync", demo, url, env=env).stdout) != (0, files, 0)
    assert _summary(replica("sync", demo, url, env=env).stdout) == (0, files, 0)
    down = tmp_path / "down"
    assert _summary(replica("sync", url, down, env=env).stdout)[0] == files
    assert _summary(replica("sync", url, down, env=env).stdout) == (0, files, 0)


def test_a_changed_file_is_copied_again(
    demo: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    """Same size, other bytes: the digest, not the size alone, decides."""
    archive = tmp_path / "archive"
    replica("sync", demo, archive)
    url, env = _url(object_store, "changed"), object_store.env()
    assert replica("sync", archive, url, env=env).returncode == 0
    gap_file = next(archive.glob("gaps/date=*/*.parquet"))
    data = bytearray(gap_file.read_bytes())
    data[-10] ^= 0xFF
    gap_file.write_bytes(bytes(data))
    again = replica("sync", archive, url, env=env)
    assert _summary(again.stdout) == (1, len(_sealed(archive)) - 1, len(data))


def test_the_spool_locks_staging_and_temporaries_are_never_copied(
    demo: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    assert replica("sync", demo, archive).returncode == 0
    hour = next(archive.glob("raw/date=*/hour=*"))
    unsealed = [
        archive / "spool" / "unit.wal",
        archive / ".lock",
        archive / ".compact" / "date=2026-11-20" / "x.parquet",
        hour / ".00000000000000000001-00000000000000000002.parquet.123.tmp",
        archive / "decoded" / ".staging" / "date=2026-11-20" / "x.parquet",
    ]
    for path in unsealed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not sealed")
    url, env = _url(object_store, "sealed"), object_store.env()
    assert replica("sync", archive, url, env=env).returncode == 0
    down = tmp_path / "down"
    assert replica("sync", url, down, env=env).returncode == 0
    assert _sealed(down) == _sealed(demo)
    assert not any(path.name.startswith(".") for path in down.rglob("*"))
    assert not (down / "spool").exists()


@pytest.mark.parametrize("wrong", ["secret", "endpoint"])
def test_a_wrong_secret_or_endpoint_is_one_line_naming_no_secret(
    demo: Path, object_store: ObjectStore, wrong: str
) -> None:
    bad_secret = "wrong-SECRET-b7e2d4"
    env = object_store.env(bad_secret if wrong == "secret" else SECRET_KEY)
    if wrong == "endpoint":
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # discard: nothing listens
    result = replica("sync", demo, _url(object_store, "refused"), env=env, timeout=300)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.startswith("replica: error: s3://") and result.stderr.count("\n") == 1
    for secret in (SECRET_KEY, bad_secret):
        assert secret not in result.stderr
    assert f"; check the {'credentials' if wrong == 'secret' else 'endpoint'} (" in result.stderr
    assert "Traceback" not in result.stderr


def test_credentials_in_the_url_are_refused_without_echoing_them(demo: Path) -> None:
    result = replica("sync", demo, f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/x")
    assert result.returncode == 2
    assert "credentials in a URL are refused" in result.stderr
    assert SECRET_KEY not in result.stderr and ACCESS_KEY not in result.stderr


def test_delete_removes_what_the_archive_no_longer_has_and_nothing_else(
    demo: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    """As after a compaction, which replaces a day's hourly files by others."""
    archive = tmp_path / "archive"
    replica("sync", demo, archive)
    url, env = _url(object_store, "delete"), object_store.env()
    assert replica("sync", archive, url, env=env).returncode == 0
    replaced = next(archive.glob("decoded/orders/date=*/*.parquet"))
    replaced.unlink()
    files = len(_sealed(archive))
    kept = replica("sync", archive, url, env=env)
    assert _summary(kept.stdout) == (0, files, 0)  # without --delete, the bucket keeps it
    deleted = replica("sync", archive, url, "--delete", env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"0 files copied, {files} skipped, 0 bytes, 1 deleted\n"
    down = tmp_path / "down"
    assert replica("sync", url, down, env=env).returncode == 0
    assert _sealed(down) == _sealed(archive)


def test_a_big_file_goes_up_in_parts_and_comes_back_whole(
    demo: Path, object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    replica("sync", demo, archive)
    big = archive / "quarantine" / "date=2026-11-20" / "big.parquet"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(23 << 20))
    url, env = _url(object_store, "big"), object_store.env()
    assert replica("sync", archive, url, env=env).returncode == 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = pafs.S3FileSystem(endpoint_override=object_store.endpoint, region="us-east-1")
    key = f"{url.removeprefix('s3://')}/quarantine/date=2026-11-20/big.parquet"
    with store.open_input_stream(key) as stream:
        etag = stream.metadata()["ETag"].decode().strip('"')
    assert int(etag.rsplit("-", 1)[1]) > 1  # the ETag of a multipart upload counts its parts
    down = tmp_path / "down"
    assert replica("sync", url, down, env=env).returncode == 0
    assert (down / big.relative_to(archive)).read_bytes() == big.read_bytes()


def test_the_endpoint_may_be_given_as_an_option(
    demo: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    env = {**object_store.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # overridden
    url = _url(object_store, "option")
    up = replica("sync", demo, url, "--endpoint-url", object_store.endpoint, env=env)
    assert up.returncode == 0, up.stderr
    query = "SELECT count(*) FROM raw_cmds"
    answer = replica("sql", url, query, "--endpoint-url", object_store.endpoint, env=env)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == replica("sql", demo, query).stdout
