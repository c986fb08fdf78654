"""Out-of-band delivery simulators: an SMS gateway outbox and per-device push outboxes."""
