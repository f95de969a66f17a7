"""Generated protobuf code; see the .proto beside it."""
