"""Stage 2: decode the archive's raw payloads (protobuf or node JSON) into typed tables."""
