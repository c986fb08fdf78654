"""The caller's side of the gRPC API: the channel and its config, typed errors and results,
the enum and metadata conversions shared with the service (`wire`), and the technician's
station (`station`: in the full distribution only; the API-only one, api/, leaves it out, so
nothing here imports it)."""

from otphsm.client.channel import DEFAULT_TIMEOUT, Client, ClientConfig, client_config, open_channel
from otphsm.client.errors import (
    AuthorisationRefused,
    ServiceError,
    ServiceRefused,
    ServiceUnavailable,
    service_error,
)
from otphsm.client.operations import Operator, Verifier
from otphsm.client.results import (
    AuditReport,
    Authorised,
    IssuedToken,
    TokenView,
)
from otphsm.client.wire import REASON_KEY, RETRY_AFTER_KEY
from otphsm.core.verification import VerifyOutcome

__all__ = [
    "DEFAULT_TIMEOUT",
    "REASON_KEY",
    "RETRY_AFTER_KEY",
    "AuditReport",
    "AuthorisationRefused",
    "Authorised",
    "Client",
    "ClientConfig",
    "IssuedToken",
    "Operator",
    "ServiceError",
    "ServiceRefused",
    "ServiceUnavailable",
    "TokenView",
    "Verifier",
    "VerifyOutcome",
    "client_config",
    "open_channel",
    "service_error",
]
