"""SMS gateway simulator (an outbox on disk)."""
