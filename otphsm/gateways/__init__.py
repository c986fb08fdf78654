"""Delivery adapters of the ports `SmsGateway` and `PushGateway` (otphsm.core.ports):
`sms_http` sends SMS through a carrier's HTTP API; `sms_outbox` and `push_outbox` write file
outboxes (an SMS JSON-lines file, a push spool directory with one file per device), the
delivery for development and for an external sender. Import the module you need: the CLI
reads the push outbox layout without loading the HTTP client."""
