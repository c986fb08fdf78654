"""Creating a token for an authorised citizen, with the activation it waits for."""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass

from otphsm.core.activation import (
    check_temporary_secret,
    format_activation_code,
    new_activation_code,
)
from otphsm.core.app.context import Actor, App
from otphsm.core.app.enrolment import consume_authorisation
from otphsm.core.app.revocation import revoke_token
from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.records import Activation, ActivationMethod
from otphsm.core.seeds import SeedRef
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState

ISSUANCE = "issuance"
"""The unit of work's name, and so its write points' prefix (`App.transaction`)."""

COMPAT_SEED_BYTES = {HashAlgorithm.SHA1: 20, HashAlgorithm.SHA256: 32, HashAlgorithm.SHA512: 64}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """Returned once, at creation. `activation_code` and `otpauth_uri` are secrets: they are
    never stored in clear and never returned again."""

    token: Token
    activation: Activation
    activation_code: str = ""
    """Formatted 18-digit code (CODE method)."""
    otpauth_uri: str = ""
    """otpauth:// URI with the seed (OTPAUTH method only)."""


def activation_mac(app: App, method: ActivationMethod, codice_fiscale: str, secret: str) -> bytes:
    return app.hsm.keyed_digest(activation_mac_input(method, codice_fiscale, secret))


def activation_mac_input(method: ActivationMethod, codice_fiscale: str, secret: str) -> bytes:
    return f"activation:{method.value}:{codice_fiscale}:{secret}".encode()


def issue_token(
    app: App,
    actor: Actor,
    authorisation_id: str,
    *,
    method: ActivationMethod,
    params: OtpParameters,
    temporary_secret: str = "",
) -> IssuedToken:
    """Create a mobile token for the authorised citizen. It stays PENDING until the device
    activates and proves possession with a first valid code; if the citizen has an active
    or suspended mobile device, the new one replaces it at that moment. One unit of work:
    the authorisation consumed, superseded pending tokens revoked, the token, its activation
    and the audit entries, all committed together or not at all."""
    if method is ActivationMethod.TEMPORARY_SECRET:
        check_temporary_secret(temporary_secret)
    elif temporary_secret:
        raise InvalidInput("a temporary secret goes only with the temporary_secret method")
    if method is ActivationMethod.OTPAUTH and params.mode is not OtpMode.TOTP:
        raise InvalidInput("compatibility (otpauth) tokens are TOTP")
    if method is not ActivationMethod.OTPAUTH and params.algorithm is HashAlgorithm.SHA512:
        raise InvalidInput("secure activation supports SHA1 and SHA256 (ECDH yields 32 bytes)")
    new_seeds: list[SeedRef] = []
    with app.transaction(ISSUANCE, new_seeds) as work:
        authorisation = consume_authorisation(work, authorisation_id)
        cf = authorisation.codice_fiscale
        now = app.now()
        existing = work.store.tokens_of(cf)
        phones = [t for t in existing if t.kind is TokenKind.MOBILE]
        replaced = next((t for t in phones if t.state is TokenState.ACTIVE), None) or next(
            (t for t in phones if t.state is TokenState.SUSPENDED), None
        )
        for stale in existing:  # an earlier activation that never completed is superseded
            if stale.kind is TokenKind.MOBILE and stale.state is TokenState.PENDING:
                revoke_token(work, actor, stale.serial, "superseded")

        serial = "MOB-" + app.hsm.random_bytes(5).hex().upper()
        seed = None
        otpauth_uri = ""
        if method is ActivationMethod.OTPAUTH:
            secret = bytearray(app.hsm.random_bytes(COMPAT_SEED_BYTES[params.algorithm]))
            otpauth_uri = otpauth_uri_for(app.policy.issuer, cf, bytes(secret), params)
            seed = app.hsm.import_seed(secret, params.algorithm)  # wipes `secret`
            new_seeds.append(seed)
        token = Token(
            serial=serial,
            codice_fiscale=cf,
            kind=TokenKind.MOBILE,
            params=params,
            seed=seed,
            state=TokenState.PENDING,
            created_at=now,
            replaces_serial=replaced.serial if replaced else None,
        )
        code = ""
        if method is ActivationMethod.CODE:
            code = new_activation_code(app.hsm.random_bytes)
            ttl = app.policy.activation_code_seconds
            mac = activation_mac(app, method, "", code)
        elif method is ActivationMethod.TEMPORARY_SECRET:
            ttl = app.policy.temporary_secret_seconds
            mac = activation_mac(app, method, cf, temporary_secret)
        else:
            ttl = app.policy.activation_code_seconds
            mac = b""
        activation = Activation(
            activation_id=app.new_id("ac"),
            token_serial=serial,
            codice_fiscale=cf,
            method=method,
            secret_mac=mac,
            created_at=now,
            expires_at=now + ttl,
        )
        work.store.insert_token(token)
        work.store.insert_activation(activation)
        work.audit(
            actor,
            "token_created",
            serial,
            codice_fiscale=cf,
            method=method.value,
            mode=params.mode.value,
            algorithm=params.algorithm.value,
            digits=params.digits,
            replaces=token.replaces_serial,
        )
    return IssuedToken(
        token=token,
        activation=activation,
        activation_code=format_activation_code(code) if code else "",
        otpauth_uri=otpauth_uri,
    )


def otpauth_uri_for(issuer: str, account: str, secret: bytes, params: OtpParameters) -> str:
    """Key URI for standard authenticator apps; defaults left out, as most apps ignore them."""
    # The colon separates issuer and account: escaped, apps (pyotp among them) take it as
    # part of the account name.
    label = f"{urllib.parse.quote(issuer, safe='')}:{urllib.parse.quote(account, safe='')}"
    query = {"secret": base64.b32encode(secret).decode().rstrip("="), "issuer": issuer}
    if params.algorithm is not HashAlgorithm.SHA1:
        query["algorithm"] = params.algorithm.value
    if params.digits != 6:
        query["digits"] = str(params.digits)
    if params.period != 30:
        query["period"] = str(params.period)
    return f"otpauth://totp/{label}?{urllib.parse.urlencode(query)}"
