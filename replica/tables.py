"""The one way the CLI draws a table for people to read: through ``rich``, as plain text.

``replica sql --format table``, ``replica gaps``, ``replica stats`` and the demo all print their
tables here, so they look alike. The text has no colour or terminal codes whatever stdout is, so
it reads the same in a terminal, a log or a file; scripts read the csv/json forms instead.
``rich`` is imported on first use: ``replica --help`` does not pay for it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    """``rows`` of cells under ``header``, each column to the right where ``right`` says so,
    one line per row (nothing is wrapped or cut here), ending with a newline."""
    from rich import box
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    right = right or [False] * len(header)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, to_right in zip(header, right, strict=True):
        table.add_column(Text(name), justify="right" if to_right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: a cell's "[b]" is not markup
    widths = [max(map(cell_len, column)) for column in zip(header, *rows, strict=True)]
    text = io.StringIO()
    console = Console(
        file=text,
        width=sum(widths) + 3 * len(widths) + 1,  # wide enough that no row wraps
        color_system=None,
        force_terminal=False,
        highlight=False,
        emoji=False,
    )
    console.print(table)
    return "".join(line.rstrip() + "\n" for line in text.getvalue().splitlines())
