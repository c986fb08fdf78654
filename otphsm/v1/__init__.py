"""Generated from proto/otphsm/v1 by `make proto` (scripts/proto.sh); do not edit by hand."""
