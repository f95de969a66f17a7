"""The keys replica writes into the schema metadata of its Parquet files, each with one meaning.

Raw files (``raw/``), written once by a recorder or an import and never rewritten:

    replica.recorder     the replica version that wrote the file
    replica.source       where its commands came from: the feed's URL (without credentials),
                         or ``node replica_cmds <height>`` for a node import

Decoded files (``decoded/``), derived from one raw segment and rewritten by a newer decoder:

    replica.decoder      the decoder's version and schema fingerprint
    replica.raw_segment  ``<size in bytes>:<name>`` of the raw segment they were decoded from

Decoded files of earlier versions named their raw segment under ``replica.source``; they carry
no ``replica.raw_segment``, so ``replica decode`` counts them stale and decodes those segments
again (and ``replica compact`` drops rather than merges them), as after a decoder upgrade.
"""

from __future__ import annotations

RECORDER_KEY = b"replica.recorder"
SOURCE_KEY = b"replica.source"
DECODER_KEY = b"replica.decoder"
RAW_SEGMENT_KEY = b"replica.raw_segment"
