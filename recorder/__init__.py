"""Stage 1: tail the Disk-Sync feed into crash-safe Parquet segments."""

__version__ = "0.1.0"
