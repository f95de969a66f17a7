"""``replica report``: an archive's health as one static HTML page of plots.

    from replica.report.write import Range, write_report
    write_report(Path("archive"), Path("report.html"), Range(start_ms, end_ms))

``data`` aggregates in DuckDB through the views of ``replica sql``; ``plots`` draws the
aggregates as SVG with matplotlib (the ``replica[report]`` extra); ``page`` lays them out with
the numbers embedded as JSON; ``write`` puts the page in its file. The command is
``replica.commands.report``; this package's top imports nothing.
"""
