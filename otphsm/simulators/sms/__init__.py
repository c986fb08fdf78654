"""The phone's side of out-of-band delivery: reading the SMS outbox and the per-device push
outboxes the gateways in `otphsm.gateways` write."""
