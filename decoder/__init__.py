"""Stage 2: raw payloads into typed tables (built by the decoder issue)."""
