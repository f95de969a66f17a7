"""The report's plots, drawn by matplotlib as inline SVG: a page that needs no script and no
network to open, a few hundred kilobytes for a day of per-minute series.

Each function takes the aggregated rows of ``replica.report.data`` and returns one ``<svg>``
element. Minutes without commands are holes in a line, not zeros, except in the command rate.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from replica.schemas.errors import ReplicaError

try:
    import matplotlib
    import numpy as np
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
except ImportError:
    raise ReplicaError(
        "replica report needs matplotlib, which is not installed: pip install 'replica[report]'"
    ) from None

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Rows = list[dict[str, Any]]  # of replica.report.data: one dict a row
Columns = dict[str, list[Any]]  # a per-minute series: one list a column

WIDTH_IN = 11.0
ROW_IN = 2.6
LEFT_IN = 1.0  # room for the y axis's label and ticks
RIGHT_IN = 0.35  # room for the last tick's label
BOTTOM_IN = 0.6  # room for the time axis
# Colours that stay apart for the common kinds of colour blindness (Okabe and Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
# Any-keyed: matplotlib's stubs accept only literal rcParams names.
_STYLE: dict[Any, Any] = {
    "svg.fonttype": "none",  # text as <text>, not paths: smaller, and selectable
    "svg.hashsalt": "replica-report",  # the same data draws the same SVG
    "text.parse_math": False,  # a "$" in a kind or endpoint name is text, not mathtext
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def drawn(draw: Callable[..., Figure]) -> Callable[..., str]:
    """A plot function that returns its figure as one ``<svg>`` element, drawn and saved with
    the report's style in force (axes take their grid and spines when created)."""

    def inner(*args: Any) -> str:
        buffer = io.StringIO()
        with matplotlib.rc_context(_STYLE):
            draw(*args).savefig(buffer, format="svg", metadata={"Date": None})
        text = buffer.getvalue()
        return text[text.index("<svg") :]

    inner.__doc__ = draw.__doc__
    return inner


def _figure(rows: int = 1, height_in: float = ROW_IN) -> tuple[Figure, list[Axes]]:
    """Stacked axes sharing x, with the same margins in every figure, so that the time axes of
    a page line up under each other."""
    height = height_in * rows
    figure = Figure(figsize=(WIDTH_IN, height))
    figure.subplots_adjust(
        left=LEFT_IN / WIDTH_IN, right=1 - RIGHT_IN / WIDTH_IN,
        bottom=BOTTOM_IN / height, top=1 - 0.15 / height, hspace=0.12 * rows,
    )  # fmt: skip
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return figure, list(axes)


def _minutes(minutes: Sequence[int]) -> np.ndarray:
    return np.asarray(minutes, dtype="int64").astype("datetime64[m]")


def _on_grid(
    minutes: Sequence[int], values: Sequence[float], fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """The series on every minute from its first to its last, ``fill`` where it has none."""
    first, last = minutes[0], minutes[-1]
    grid = np.full(last - first + 1, fill, dtype="float64")
    grid[np.asarray(minutes) - first] = values
    return _minutes(range(first, last + 1)), grid


def _time_axis(axes: Axes, span: tuple[int, int]) -> None:
    """UTC dates on the x axis, from minute ``span[0]`` to ``span[1]``: every time plot of a
    page has the same axis, so that a moment is at the same place in each."""
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.set_xlabel("UTC")
    axes.set_xlim(_minutes(span)[0], _minutes(span)[1])


@drawn
def commands_per_second(per_minute: Columns, bands: Rows, span: tuple[int, int]) -> Figure:
    """Commands per second, averaged per minute, with the gaps as bands coloured by cause."""
    figure, (axes,) = _figure()
    minutes, counts = _on_grid(per_minute["minute"], per_minute["commands"], 0.0)
    axes.plot(minutes, counts / 60, color=PALETTE[0], linewidth=0.8, label="commands/s")
    colours: dict[str, str] = {}
    shortest = np.timedelta64((span[1] - span[0]) * 60_000 // 400, "ms")  # still visible
    for band in bands:
        cause = band["cause"]
        label = None if cause in colours else f"gap: {cause}"
        colour = colours.setdefault(cause, PALETTE[1 + len(colours) % (len(PALETTE) - 1)])
        start, end = np.array([band["from_ms"], band["to_ms"]], dtype="datetime64[ms]")
        end = max(end, start + shortest)
        axes.axvspan(start, end, color=colour, alpha=0.35, linewidth=0, label=label)
    axes.set_ylabel("commands per second")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper right", fontsize=8)
    _time_axis(axes, span)
    return figure


@drawn
def latency(per_minute: Columns, span: tuple[int, int]) -> Figure:
    """p50 and p99 per minute of the vendor's processing and of network plus clock offset."""
    figure, axes = _figure(2)
    panels = (
        ("vendor", "vendor processing\npublish - ingest (ms)"),
        ("network", "network + clock offset\nrecv - publish (ms)"),
    )
    for ax, (name, label) in zip(axes, panels, strict=True):
        for quantile, colour in (("p50", PALETTE[0]), ("p99", PALETTE[3])):
            minutes, values = _on_grid(
                per_minute["minute"], per_minute[f"{name}_{quantile}_us"], np.nan
            )
            ax.plot(minutes, values / 1000, color=colour, linewidth=0.8, label=quantile)
        ax.set_ylabel(label)
        ax.legend(loc="upper right", fontsize=8)
    _time_axis(axes[-1], span)
    return figure


@drawn
def quarantine(rows: Rows, span: tuple[int, int]) -> Figure:
    """Quarantined frames per minute, one marker series per kind."""
    figure, (axes,) = _figure()
    for i, kind in enumerate(sorted({row["kind"] for row in rows})):
        mine = [row for row in rows if row["kind"] == kind]
        minutes = _minutes([row["minute"] for row in mine])
        frames = [row["frames"] for row in mine]
        colour = PALETTE[i % len(PALETTE)]
        axes.plot(minutes, frames, "o", color=colour, markersize=4, label=kind, clip_on=False)
    axes.set_ylabel("frames per minute")
    axes.set_ylim(0, 1.15 * max(row["frames"] for row in rows))
    axes.legend(loc="upper right", fontsize=8)
    _time_axis(axes, span)
    return figure


@drawn
def endpoint_lag(rows: Rows, span: tuple[int, int]) -> Figure:
    """How far behind the first delivery each endpoint delivered, p50 and p99 per minute."""
    figure, (axes,) = _figure()
    for i, endpoint in enumerate(sorted({row["endpoint"] for row in rows})):
        mine = [row for row in rows if row["endpoint"] == endpoint]
        minutes = [row["minute"] for row in mine]
        colour = PALETTE[i % len(PALETTE)]
        for quantile, style in (("p50", "-"), ("p99", ":")):
            grid, values = _on_grid(minutes, [row[f"behind_{quantile}_us"] for row in mine], np.nan)
            axes.plot(
                grid, values / 1000, style, color=colour, linewidth=0.9,
                label=f"{endpoint} {quantile}",
            )  # fmt: skip
    axes.set_ylabel("behind the first\ndelivery (ms)")
    axes.legend(loc="upper right", fontsize=8)
    _time_axis(axes, span)
    return figure


@drawn
def endpoint_wins(rows: Rows) -> Figure:
    """The share of the commands delivered by more than one endpoint that each delivered first."""
    total = sum(row["won"] for row in rows) or 1
    figure, (axes,) = _figure(height_in=0.6 + 0.35 * len(rows))
    names = [row["endpoint"] for row in rows]
    shares = [100 * row["won"] / total for row in rows]
    bars = axes.barh(names, shares, color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))])
    axes.bar_label(bars, labels=[f"{share:.1f}%" for share in shares], padding=3, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 110)
    axes.set_xlabel("share of shared commands delivered first (%)")
    return figure
