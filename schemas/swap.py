"""Exchanging two directories in one step, so that a reader of either path sees all of one
directory or all of the other, never a mix and never nothing.

Two renames would leave a moment with no directory at the live path; Linux's ``renameat2`` with
``RENAME_EXCHANGE`` swaps both names at once. Python has no binding for it, hence ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from replica.schemas.errors import ArchiveError

_AT_FDCWD = -100  # paths relative to the working directory, as open() takes them
_RENAME_EXCHANGE = 2
_REFUSED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}  # no kernel or filesystem support


def exchange(first: Path, second: Path) -> None:
    """Swap the directories at ``first`` and ``second``; both must exist."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        raise ArchiveError(_unsupported("this C library has no renameat2")) from None
    path, fd = ctypes.c_char_p, ctypes.c_int
    renameat2.argtypes = [fd, path, fd, path, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        if code in _REFUSED:
            raise ArchiveError(_unsupported(f"swapping {first} and {second}: {os.strerror(code)}"))
        raise ArchiveError(f"cannot swap {first} and {second}: {os.strerror(code)}")


def _unsupported(detail: str) -> str:
    return (
        "compaction needs an atomic directory exchange (Linux renameat2 with RENAME_EXCHANGE, on "
        f"a local filesystem such as ext4, xfs or btrfs); {detail}"
    )
