"""The report page in a real headless Chromium: no console error, every plot drawn with a size
and marks, the embedded numbers readable by a script, and a screenshot kept as an artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from replica.report.write import write_report
from tests.browser import chromium, open_page
from tests.reportarchive import write_report_archive

PLOTS = (
    "plot-commands",
    "plot-latency",
    "plot-quarantine",
    "plot-endpoint-lag",
    "plot-endpoint-wins",
)

pytestmark = pytest.mark.skipif(
    chromium() is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run installs it)",
)


def test_every_plot_renders_in_chromium_without_error(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    write_report_archive(root)
    page = tmp_path / "report.html"
    data = write_report(root, page)

    view = open_page(page)
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(view.screenshot)
    print(f"screenshot: {screenshot}")

    assert view.errors == []
    assert [plot["id"] for plot in view.plots] == list(PLOTS)
    for plot in view.plots:
        assert plot["width"] > 500 and plot["height"] > 100, plot
        assert plot["marks"] > 20, plot  # axes, ticks, lines: more than an empty frame
    assert view.report_data == data
    assert view.screenshot.startswith(b"\x89PNG") and len(view.screenshot) > 50_000


def test_the_browser_sees_console_errors_and_empty_plots(tmp_path: Path) -> None:
    """The checks above can fail: an error logged, an exception thrown, a plot without SVG."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><figure class="plot" id="plot-empty"></figure>'
        "<script>console.error('drawn wrong'); undefinedFunction();</script></body></html>"
    )
    view = open_page(page)
    assert "drawn wrong" in view.errors[0]
    assert any("undefinedFunction" in error for error in view.errors[1:]), view.errors
    assert view.plots == [{"id": "plot-empty", "width": 0, "height": 0, "marks": 0}]
    assert view.report_data is None
