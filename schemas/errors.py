"""The one exception tree of replica; the CLI turns ``exit_code`` into the process status.

ReplicaError             anything replica refuses to do, with a message that says why (exit 1)
├── UsageError           a bad argument: a URL, a duration, a time, a path (exit 2)
│   └── NotAnArchive     a path given as an archive is not one (also an ArchiveError)
├── ArchiveError         an archive cannot be used as asked (exit 1)
│   ├── ArchiveLocked    another process holds the archive or its maintenance lock (exit 4)
│   └── GapInRange       a replay asked to fail on gaps met one (exit 1)
├── AuthRefused          the feed refused the credentials; retrying will not help (exit 3)
└── NothingRecorded      a recording window ended without one new command (exit 5)
"""


class ReplicaError(Exception):
    exit_code = 1


class UsageError(ReplicaError):
    exit_code = 2


class ArchiveError(ReplicaError):
    pass


class NotAnArchive(UsageError, ArchiveError):
    """Only ``record`` and ``import-node`` create an archive; everything else is handed one."""


class ArchiveLocked(ArchiveError):
    exit_code = 4


class GapInRange(ArchiveError):
    """Raised with ``fail_on_gap`` at the gap's place in the stream; ``gap`` says which."""

    def __init__(self, message: str, gap: object) -> None:
        super().__init__(message)
        self.gap = gap


class AuthRefused(ReplicaError):
    exit_code = 3


class NothingRecorded(ReplicaError):
    """A ``--duration``/``--until`` window ended having recorded nothing: never connected, or
    no command came. Its own exit code, so that cron and systemd see the empty day."""

    exit_code = 5
