"""``replica report`` of an archive on ``s3://bucket/prefix`` (SeaweedFS on loopback): the page
written locally holds the same figures as the local archive's page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import replica
from tests.objectstore import SECRET_KEY, ObjectStore
from tests.reportarchive import write_report_archive
from tests.test_report import page_data


@pytest.fixture(scope="module")
def archives(
    tmp_path_factory: pytest.TempPathFactory, object_store: ObjectStore
) -> tuple[Path, str]:
    """An archive with something in every section of the report, and its copy on the store."""
    root = tmp_path_factory.mktemp("s3report") / "archive"
    write_report_archive(root)
    url = f"s3://{object_store.bucket}/report"
    result = replica("sync", root, url, env=object_store.env())
    assert result.returncode == 0, result.stderr
    return root, url


@pytest.mark.parametrize("selection", [(), ("--date", "2026-11-21")])
def test_the_report_of_a_bucket_has_the_figures_of_the_local_one(
    archives: tuple[Path, str],
    object_store: ObjectStore,
    tmp_path: Path,
    selection: tuple[str, ...],
) -> None:
    root, url = archives
    local, remote = tmp_path / "local.html", tmp_path / "remote.html"
    assert replica("report", root, "-o", local, *selection).returncode == 0
    result = replica("report", url, "-o", remote, *selection, env=object_store.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{remote}: ")
    data = page_data(remote.read_text())
    assert data == page_data(local.read_text())
    assert data["days"] and data["endpoints"] and data["quarantine"] and data["gap_bands"]
    assert url in remote.read_text()
    assert SECRET_KEY not in remote.read_text() + result.stdout + result.stderr


def test_a_report_written_to_a_bucket_is_refused_in_one_line(
    archives: tuple[Path, str], object_store: ObjectStore
) -> None:
    _, url = archives
    result = replica("report", url, "-o", f"{url}/report.html", env=object_store.env())
    assert result.returncode == 2
    assert result.stderr == (
        f"replica: error: -o {url}/report.html: the report is written to a local file; "
        "give a local path\n"
    )


def test_wrong_credentials_are_one_line_without_the_secret(
    archives: tuple[Path, str], object_store: ObjectStore, tmp_path: Path
) -> None:
    _, url = archives
    wrong = "wrong-SECRET-4e2b77"
    out = tmp_path / "report.html"
    result = replica("report", url, "-o", out, env=object_store.env(secret=wrong))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert "check the credentials" in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert not out.exists()
