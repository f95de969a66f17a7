"""Whether a Parquet file carries page checksums, which ``verify`` needs to know.

Every file replica writes has a CRC-32 in each page's header (``schemas.files.PAGE_CHECKSUMS``);
pyarrow checks them when asked, but silently passes a page without one and has no way to say
whether a file has them. Files an older replica wrote have none, and a bit flipped inside one of
their pages is found only if it breaks decompression or decoding, which most flips do not.

The CRC is field 4 of a page header (Thrift compact protocol), after three 32-bit integers: the
page type and its uncompressed and compressed sizes. A writer sets it on all of a file's pages or
on none, so the first page tells.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

_CRC_FIELD = 4
_I32 = 5  # the compact protocol's type code of a 32-bit integer
_HEADER_PREFIX = 32  # bytes enough for the fields before the CRC (at most 5 each, and a byte)


def has_page_checksums(path: Path, metadata: pq.FileMetaData) -> bool:
    """Whether the pages of the Parquet file at ``path`` (whose footer is ``metadata``) carry
    CRCs; True for a file without pages, which has nothing to check."""
    if metadata.num_row_groups == 0 or metadata.num_columns == 0:
        return True
    chunk = metadata.row_group(0).column(0)
    offset = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    with path.open("rb") as source:
        source.seek(offset)
        return _crc_follows(source.read(_HEADER_PREFIX))


def _crc_follows(header: bytes) -> bool:
    """Whether this page header's fields, read in order, reach the CRC: each field starts with
    a byte holding the step from the previous field's id (high half) and its type (low half);
    the three fields before the CRC are varints."""
    field, pos = 0, 0
    while pos < len(header):
        step, kind = header[pos] >> 4, header[pos] & 0x0F
        if step == 0:
            return False  # a long-form field id, which no header with a CRC first needs
        field += step
        if field >= _CRC_FIELD or kind != _I32:
            return field == _CRC_FIELD and kind == _I32
        pos += 1
        while pos < len(header) and header[pos] & 0x80:
            pos += 1
        pos += 1
    return False
