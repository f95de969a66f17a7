"""The ``replica`` commands by concern, each a thin click wrapper over a library call.

``recording`` (record, demo), ``replaying`` (replay, serve), ``maintenance`` (verify, gaps,
decode, compact, import-node), ``query`` (sql, duckdb, stats) and ``report``; ``replica.cli``
gathers them into one group. Each command imports the stage it runs when it runs: a cron job
running one command does not pay for loading the others.
"""
