"""Stage 3: re-emit archived commands; serves the Disk-Sync protocol to feed clients."""
