"""``replica report``: the page's numbers against the fixture's rows and SQL run on the files
directly, the range options, the one-endpoint page, and the refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from replica.schemas.archive import QUARANTINE_SCHEMA, ArchiveLayout, date_partition
from replica.schemas.files import publish_parquet

from replica.sql import connect, view_names
from replica.stats import archive_stats
from tests.conftest import replica
from tests.rawarchive import feed_rows, write_archive
from tests.reportarchive import write_report_archive

MIDNIGHT_MS = 1_795_219_200_000  # 2026-11-21T00:00Z, inside the bundled feed
TIME_PLOTS = ("plot-commands", "plot-latency", "plot-quarantine", "plot-endpoint-lag")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    root = tmp_path_factory.mktemp("report") / "archive"
    return root, write_report_archive(root)


def page_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html)
    assert match, "no report-data block"
    return json.loads(match.group(1))


def report(root: Path, out: Path, *args: str) -> dict:
    result = replica("report", root, "-o", out, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{out}: ")
    return page_data(out.read_text())


def files(root: Path, table: str) -> str:
    """The table's files, for SQL that bypasses the views."""
    pattern = "raw/date=*/hour=*/*.parquet" if table == "raw_cmds" else f"{table}/date=*/*.parquet"
    return f"read_parquet('{root}/{pattern}', hive_partitioning = true)"


def test_the_page_figures_equal_the_rows_and_sql_on_the_files(archive, tmp_path: Path) -> None:
    root, written = archive
    out = tmp_path / "report.html"
    data = report(root, out)
    html = out.read_text()
    rows = written["raw_cmds"]
    plain = duckdb.connect()

    # Commands and latency per minute.
    minutes = data["per_minute"]
    assert dict(zip(minutes["minute"], minutes["commands"], strict=True)) == Counter(
        row["ts_ms"] // 60_000 for row in rows
    )
    expected = plain.sql(
        "SELECT ts_ms // 60000, count(*), "
        "quantile_disc(publish_ts_us - ingest_ts_us, 0.5), "
        "quantile_disc(publish_ts_us - ingest_ts_us, 0.99), "
        "quantile_disc(recv_ts_us - publish_ts_us, 0.5), "
        f"quantile_disc(recv_ts_us - publish_ts_us, 0.99) FROM {files(root, 'raw_cmds')} "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    columns = ("minute", "commands", "vendor_p50_us", "vendor_p99_us", "network_p50_us")
    assert list(zip(*(minutes[c] for c in (*columns, "network_p99_us")), strict=True)) == expected

    # Gaps: by day and cause, and as bands (these two are minutes apart: one band each).
    gaps = written["gaps"]
    assert [(g["date"], g["cause"], g["records"], g["missing"]) for g in data["gaps_by_cause"]] == [
        (date_partition(g["after_ts_ms"])[5:], g["cause"], 1, g["missing"]) for g in gaps
    ]
    assert data["gap_bands"] == [
        {"cause": g["cause"], "from_ms": g["before_ts_ms"], "to_ms": g["after_ts_ms"],
         "records": 1, "missing": g["missing"]}
        for g in gaps
    ]  # fmt: skip

    # Quarantine per minute and kind.
    assert {(q["minute"], q["kind"]): q["frames"] for q in data["quarantine"]} == Counter(
        (q["recv_ts_us"] // 60_000_000, q["kind"]) for q in written["quarantine"]
    )

    # Per day: replica stats' figures, arrivals not counted as a decoded table.
    days = [day.to_json() for day in archive_stats(root)]
    assert data["days"] == json.loads(json.dumps(days))
    assert sum(day["commands"] for day in data["days"]) == len(rows)
    assert all("arrivals" not in day["decoded_rows"] for day in data["days"])
    assert data["days"][0]["percent_complete"] == 99.7099
    assert "<td>99.70</td>" in html  # rounded down, as replica stats prints it: never 100 early

    # Node actions by type and undecoded rows by reason, from the decoded files.
    actions = plain.sql(
        f"SELECT date::VARCHAR, kind, count(*) FROM {files(root, 'decoded/actions')} "
        "GROUP BY ALL ORDER BY 1, 3 DESC, 2"
    ).fetchall()
    assert [(a["date"], a["kind"], a["actions"]) for a in data["actions"]] == actions
    with_facts = plain.sql(
        f"SELECT date::VARCHAR, kind, count(*) FILTER (WHERE coalesce(facts, 0) > 0) "
        f"FROM {files(root, 'decoded/actions')} GROUP BY ALL ORDER BY 1, count(*) DESC, 2"
    ).fetchall()
    assert [(a["date"], a["kind"], a["with_facts"]) for a in data["actions"]] == with_facts
    assert "<th>% undecoded</th>" in html  # the undecoded share of each action type
    [undecoded] = plain.sql(
        f"SELECT count(*), count(DISTINCT seq) FROM {files(root, 'decoded/undecoded')}"
    ).fetchall()
    assert (
        sum(u["rows"] for u in data["undecoded"]),
        sum(u["commands"] for u in data["undecoded"]),
    ) == undecoded
    assert {u["reason"] for u in data["undecoded"]} >= {"protobuf", "node block", "not JSON"}

    # Endpoints: who delivered each command both delivered first, and by how much.
    by_seq: dict[int, dict[str, int]] = {}
    for arrival in written["arrivals"]:
        by_seq.setdefault(arrival["seq"], {})[arrival["endpoint"]] = arrival["recv_ts_us"]
    shared = {seq: at for seq, at in by_seq.items() if len(at) == 2}
    won = Counter(
        "tie" if at["a"] == at["b"] else min(at, key=at.__getitem__) for at in shared.values()
    )
    delivered = Counter(arrival["endpoint"] for arrival in written["arrivals"])
    assert data["endpoints"]["wins"] == [
        {"endpoint": "a", "delivered": delivered["a"], "shared": len(shared), "won": won["a"]},
        {"endpoint": "b", "delivered": delivered["b"], "shared": len(shared), "won": won["b"]},
        {"endpoint": "tie", "delivered": None, "shared": None, "won": won["tie"]},
    ]
    assert won["a"] and won["b"] and won["tie"]
    lag = plain.sql(
        "WITH s AS (SELECT seq, min(recv_ts_us) AS first_us FROM "
        f"{files(root, 'arrivals')} GROUP BY seq HAVING count(*) > 1) "
        "SELECT first_us // 60000000, endpoint, count(*), quantile_disc(recv_ts_us - first_us, "
        f"0.5), quantile_disc(recv_ts_us - first_us, 0.99) FROM {files(root, 'arrivals')} "
        "JOIN s USING (seq) GROUP BY ALL ORDER BY 1, 2"
    ).fetchall()
    assert [tuple(row.values()) for row in data["endpoints"]["lag"]] == lag

    # Every section is drawn; nothing is fetched from anywhere.
    for plot in (*TIME_PLOTS, "plot-endpoint-wins"):
        assert f'<figure class="plot" id="{plot}"><svg' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "one endpoint recorded" not in html


def test_one_endpoint_is_said_and_not_drawn(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    write_archive(root, feed_rows(), per_segment=1000)
    out = tmp_path / "report.html"
    data = report(root, out)
    html = out.read_text()
    with connect(root) as db:
        assert "arrivals" not in view_names(db)
    assert data["endpoints"] is None
    assert "one endpoint recorded" in html and "plot-endpoint" not in html
    assert "nothing quarantined" in html and "not decoded" in html
    assert 'id="plot-commands"' in html and 'id="plot-latency"' in html


def test_date_and_start_end_narrow_every_section(archive, tmp_path: Path) -> None:
    root, written = archive
    day = report(root, tmp_path / "day.html", "--date", "2026-11-21")
    assert day["range"] == {"start_ms": MIDNIGHT_MS, "end_ms": MIDNIGHT_MS + 86_400_000}
    assert [d["date"] for d in day["days"]] == ["2026-11-21"]
    assert sum(day["per_minute"]["commands"]) == sum(
        row["ts_ms"] >= MIDNIGHT_MS for row in written["raw_cmds"]
    )
    assert [g["cause"] for g in day["gaps_by_cause"]] == ["reconnect"]
    assert [q["kind"] for q in day["quarantine"]] == ["missing_field"]
    assert {d["date"] for d in day["actions"]} == {"2026-11-21"}

    # One minute before midnight: the commands of that minute only, the jump gap in it.
    minute = report(
        root, tmp_path / "minute.html", "--start", "2026-11-20T23:59Z", "--end", "2026-11-21T00:00Z"
    )
    assert minute["per_minute"]["minute"] == [MIDNIGHT_MS // 60_000 - 1]
    assert [g["cause"] for g in minute["gaps_by_cause"]] == ["jump"]
    assert minute["quarantine"] == []

    # A night with nothing recorded still gets its page, which says so.
    empty = report(root, tmp_path / "empty.html", "--date", "2026-11-25")
    assert empty["days"] == [] and empty["per_minute"]["minute"] == []
    html = (tmp_path / "empty.html").read_text()
    assert "<b>no commands</b>" in html and "no commands in this range" in html
    assert 'class="plot"' not in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2026-11-21", "--start", "2026-11-21T00:00Z"], "not both"),
        (["--start", "2026-11-21T01:00Z", "--end", "2026-11-21T00:00Z"], "is not before --end"),
        (["--date", "yesterday"], "'yesterday' does not match the format"),
        (["--start", "2026-11-21T00:00"], "has no time zone"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(
    archive, tmp_path: Path, args: list[str], message: str
) -> None:
    root, _ = archive
    out = tmp_path / "report.html"
    result = replica("report", root, "-o", out, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("replica: error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not out.exists()


def test_what_is_not_an_archive_or_not_writable_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = replica("report", tmp_path, "-o", out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"replica: error: {tmp_path} is not an archive: it has none")
    assert len(result.stderr.splitlines()) == 1
    write_archive(tmp_path / "archive", feed_rows()[:10])
    result = replica("report", tmp_path / "archive", "-o", tmp_path / "missing" / "report.html")
    assert result.returncode == 2
    assert "directory" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not out.exists()


def test_without_matplotlib_one_line_says_which_extra(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    write_archive(root, feed_rows()[:10])
    out = tmp_path / "report.html"
    hide = "import sys; sys.modules['matplotlib'] = None; from replica.cli import main; main()"
    result = replica_python(hide, "report", root, "-o", out)
    assert result.returncode == 1
    assert result.stderr == (
        "replica: error: replica report needs matplotlib, which is not installed: "
        "pip install 'replica[report]'\n"
    )
    assert not out.exists()


def replica_python(code: str, *args: str | Path):
    """``replica`` run by ``python -c code`` (which calls its main), with ``args``."""
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_names_from_the_archive_are_text_not_markup(tmp_path: Path) -> None:
    """A quarantine kind (or endpoint) is archive data: it must reach the page as text, in the
    tables, the SVG and the JSON, and a "$" in it is no matplotlib mathtext."""
    root = tmp_path / "archive"
    rows = feed_rows()[:100]
    write_archive(root, rows)
    layout = ArchiveLayout(root)
    kind = "</script><img src=x onerror=alert(1)>$x^$"
    frame = {"recv_ts_us": rows[0]["recv_ts_us"], "kind": kind, "reason": "r", "seq": None,
             "frame": "</script>", "frame_bytes": 9}  # fmt: skip
    path = layout.unit_path(layout.quarantine_dir, rows[0]["ts_ms"], "unit-1")
    publish_parquet(pa.Table.from_pylist([frame], schema=QUARANTINE_SCHEMA), path)
    out = tmp_path / "report.html"
    data = report(root, out)
    html = out.read_text()
    assert data["quarantine"][0]["kind"] == kind
    assert '<p class="verdict whole"><b>whole</b>: 100 commands, 0 seqs missing' in html
    assert "<img" not in html and html.count("</script>") == 1
    assert html.count("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;$x^$") == 2  # table, SVG


@pytest.mark.benchmark
def test_the_report_benchmark_runs_small(tmp_path: Path) -> None:
    """benchmarks/report.py still builds its day, agrees with bare DuckDB and prints its ratio."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"
    result = subprocess.run(
        [sys.executable, script, "--commands", "20000", "--json", tmp_path / "measures.json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(result.stdout, result.stderr)
    assert result.returncode == 0
    assert re.search(r"^ratio report/bare +\d+\.\d\d$", result.stdout, re.MULTILINE)
    assert re.search(r"^(PASS|MISS) report ", result.stdout, re.MULTILINE)
    [measure] = json.loads((tmp_path / "measures.json").read_text())
    assert measure["benchmark"] == "report" and measure["unit"] == "s"
