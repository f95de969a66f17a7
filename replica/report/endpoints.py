"""Which endpoint was faster, from the ``arrivals`` view (``seq``, ``endpoint``,
``recv_ts_us``: one row per delivery per endpoint) of an archive recorded from several.

Per command, each endpoint's first delivery becomes a column of one row (a single GROUP BY seq:
DuckDB does it several times faster than a window partitioned by seq, or a self-join), then per
minute of the command's first delivery: how far behind it each endpoint was (p50, p99) and how
many commands each delivered first. Only commands more than one endpoint delivered count; one
two endpoints delivered at the same microsecond is a tie, won by neither.
"""

from __future__ import annotations

from typing import Any

import duckdb

_FILTER = """date BETWEEN $first AND $last
    AND recv_ts_us >= $start_ms * 1000 AND recv_ts_us < $end_ms * 1000"""

DELIVERED_SQL = f"""
SELECT endpoint, count(*) AS delivered FROM arrivals WHERE {_FILTER}
GROUP BY endpoint ORDER BY endpoint"""


def per_minute_sql(endpoints: int) -> str:
    """Per minute, for endpoint i (named by parameter ``$e<i>``): ``c<i>`` commands it shared,
    ``q<i>`` [p50, p99] microseconds behind the first delivery, ``w<i>`` commands it won; and
    ``ties``."""
    ids = range(endpoints)
    first = f"least({', '.join(f'e{i}' for i in ids)})"
    columns = ",\n        ".join(
        f"min(recv_ts_us) FILTER (WHERE endpoint = $e{i}) AS e{i}" for i in ids
    )
    present = " + ".join(f"(e{i} IS NOT NULL)::INTEGER" for i in ids)
    at_first = " + ".join(f"coalesce(e{i} = {first}, false)::INTEGER" for i in ids)
    figures = ",\n    ".join(
        f"count(e{i}) AS c{i}, quantile_disc(e{i} - first_us, [0.5, 0.99]) AS q{i}, "
        f"count(*) FILTER (WHERE firsts = 1 AND e{i} = first_us) AS w{i}"
        for i in ids
    )
    return f"""
WITH per_seq AS (
    SELECT seq,
        {columns}
    FROM arrivals WHERE {_FILTER}
    GROUP BY seq
), shared AS (
    SELECT *, {first} AS first_us, {at_first} AS firsts FROM per_seq WHERE {present} > 1
)
SELECT first_us // 60000000 AS minute, count(*) FILTER (WHERE firsts > 1) AS ties,
    {figures}
FROM shared GROUP BY minute ORDER BY minute"""


def endpoint_figures(db: duckdb.DuckDBPyConnection, parameters: dict[str, Any]) -> dict[str, Any]:
    """``lag``: rows of minute, endpoint, commands, behind_p50_us, behind_p99_us; ``wins``:
    rows of endpoint, delivered, shared, won (and a ``tie`` row if any)."""
    delivered = dict(db.execute(DELIVERED_SQL, parameters).fetchall())
    names = sorted(delivered)
    named = parameters | {f"e{i}": name for i, name in enumerate(names)}
    minutes = db.execute(per_minute_sql(len(names)), named).fetchall() if names else []
    lag, shared, won, ties = [], [0] * len(names), [0] * len(names), 0
    for minute, minute_ties, *figures in minutes:
        ties += minute_ties
        for i, name in enumerate(names):
            commands, quantiles, wins = figures[3 * i : 3 * i + 3]
            shared[i] += commands
            won[i] += wins
            if commands:
                p50, p99 = quantiles
                lag.append(
                    {"minute": minute, "endpoint": name, "commands": commands,
                     "behind_p50_us": p50, "behind_p99_us": p99}
                )  # fmt: skip
    wins = [
        {"endpoint": name, "delivered": delivered[name], "shared": shared[i], "won": won[i]}
        for i, name in enumerate(names)
    ]
    if ties:
        wins.append({"endpoint": "tie", "delivered": None, "shared": None, "won": ties})
    return {"lag": lag, "wins": wins}
