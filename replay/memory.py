"""The allocator Arrow uses in ``replica serve``: jemalloc, which gives freed memory back.

A server's clients come and go and sit idle: each client's reader allocates a decompressed
Parquet page (about a megabyte) while it reads and frees it when parked (``replay.resumable``)
or gone. The server's resident memory then depends on whether the allocator returns what was
freed. Measured with ``benchmarks/serve_memory.py`` (16 idle-buffered clients, 200,000
commands, growth of resident memory per client, runs differing by a MB): jemalloc, which Arrow
configures to purge freed pages in the background within about a second, 0.1 to 0.3 MB;
mimalloc (pyarrow's default on Linux) 2.5 to 5.6 MB and the system allocator 3 to 4.8 MB, both
keeping what the parked readers freed.

Arrow reads ``ARROW_DEFAULT_MEMORY_POOL`` once, when pyarrow loads, and its Parquet reader
allocates pages from that pool whatever ``pyarrow.set_memory_pool`` says later: so the choice
is an environment variable set before pyarrow is imported, and this module imports nothing.
An operator's own ``ARROW_DEFAULT_MEMORY_POOL`` is kept.
"""

from __future__ import annotations

import os

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
SERVER_POOL = "jemalloc"


def choose_server_pool() -> None:
    """Asks for ``SERVER_POOL``, unless the operator chose a pool; call before pyarrow loads
    (the ``serve`` command does, first thing)."""
    os.environ.setdefault(POOL_VARIABLE, SERVER_POOL)
