"""Who is calling, and may they call this RPC.

Role scheme: the server asks every client for a certificate issued by the configured client
CA. A certificate carries its roles as URI subject alternative names,
`urn:otphsm:role:verifier` (or `enroller`, `device`, `admin`); one certificate may hold
several. The caller's name (recorded in the audit chain as `Actor.name`) is the certificate
subject, RFC 4514.

- No certificate, or one from another CA: the TLS handshake itself fails (grpcio can only
  require a client certificate or not ask for one at all, so the client sees UNAVAILABLE).
- A valid certificate that names no otphsm role: UNAUTHENTICATED (it identifies no caller
  this service knows).
- A certificate whose roles do not include one this RPC allows: PERMISSION_DENIED.

Insecure mode (an explicit flag, for local development only) has no TLS: the role is taken
from the `x-otphsm-role` metadata and each resolution is logged at WARNING.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509

from otphsm.core.app.context import Actor, Role
from otphsm.service.rpcs import RPCS

log = logging.getLogger(__name__)

ROLE_URI_PREFIX = "urn:otphsm:role:"
INSECURE_ROLE_KEY = "x-otphsm-role"
INSECURE_CALLER_KEY = "x-otphsm-caller"

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Callable by any peer the transport admitted, with or without a role (health probes)."""
ANY_ROLE_PREFIXES = ("/grpc.reflection.",)
"""Callable by any caller holding a role."""


class CallerRefused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    roles: frozenset[Role]


def role_uri(role: Role) -> str:
    return ROLE_URI_PREFIX + role.value


@functools.lru_cache(maxsize=1024)
def caller_from_certificate(pem: bytes) -> Caller:
    """The subject and the roles (URI SANs) of a client certificate (parsed once per
    certificate: a connection presents the same one on every call)."""
    certificate = x509.load_pem_x509_certificate(pem)
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris: Sequence[str] = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = ()
    known = {role_uri(role): role for role in Role}
    roles = frozenset(known[uri] for uri in uris if uri in known)
    return Caller(certificate.subject.rfc4514_string(), roles)


def allowed_roles(method: str) -> frozenset[Role] | None:
    """None when `method` is open to every caller (health)."""
    if method.startswith(OPEN_PREFIXES):
        return None
    if method.startswith(ANY_ROLE_PREFIXES):
        return frozenset(Role)
    spec = RPCS.get(method)
    return spec.roles if spec is not None else frozenset()  # an RPC not declared: refused


@functools.lru_cache(maxsize=4096)
def _actor_for(caller: Caller, method: str, allowed: frozenset[Role]) -> Actor:
    """The actor `caller` acts as on `method` (the first of its roles allowed there), decided
    once per caller and method: certificates and the RPC table do not change while serving."""
    if not caller.roles:
        raise CallerRefused(
            grpc.StatusCode.UNAUTHENTICATED,
            f"the client certificate names no otphsm role ({ROLE_URI_PREFIX}<role>)",
        )
    permitted = sorted(caller.roles & allowed)
    if not permitted:
        held = ", ".join(sorted(caller.roles)) or "none"
        raise CallerRefused(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{method} is not allowed for this caller's roles ({held})",
        )
    return Actor(caller.name, permitted[0])


class Authenticator:
    """Resolves the `Actor` of a call; raises `CallerRefused` when it may not proceed."""

    def __init__(self, *, insecure: bool) -> None:
        self.insecure = insecure

    def resolve(self, method: str, context: grpc.ServicerContext) -> Actor | None:
        """The actor, or None for an open RPC called without credentials."""
        allowed = allowed_roles(method)
        caller = self._caller(context)
        if allowed is None:
            return Actor(caller.name, min(caller.roles)) if caller and caller.roles else None
        if caller is None:
            raise CallerRefused(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        return _actor_for(caller, method, allowed)

    def _caller(self, context: grpc.ServicerContext) -> Caller | None:
        if self.insecure:
            return self._insecure_caller(context)
        # A map of property names to lists of bytes (the stubs say bytes; grpc gives lists).
        properties: Mapping[str, Any] = context.auth_context()
        pems = list(properties.get("x509_pem_cert") or ())
        if not pems:
            return None
        return caller_from_certificate(bytes(pems[0]))

    def _insecure_caller(self, context: grpc.ServicerContext) -> Caller | None:
        metadata = {key: value for key, value in context.invocation_metadata()}
        role_text = metadata.get(INSECURE_ROLE_KEY)
        if not isinstance(role_text, str):
            log.warning("INSECURE MODE: call from %s without %s", context.peer(), INSECURE_ROLE_KEY)
            return None
        try:
            role = Role(role_text)
        except ValueError:
            raise CallerRefused(
                grpc.StatusCode.UNAUTHENTICATED, f"unknown role in {INSECURE_ROLE_KEY}"
            ) from None
        name_value = metadata.get(INSECURE_CALLER_KEY)
        name = name_value[:128] if isinstance(name_value, str) else context.peer()
        log.warning(
            "INSECURE MODE: role %s taken from request metadata, unauthenticated (caller %s)",
            role.value,
            name,
        )
        return Caller(f"insecure:{name}", frozenset({role}))
