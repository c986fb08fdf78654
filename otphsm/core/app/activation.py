"""Device activation: by the 18-digit code or by the temporary secret + codice fiscale, with
the seed derived by ECDH inside the HSM; the device then proves possession (validation)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NoReturn

from otphsm.core.activation import check_temporary_secret, normalise_activation_code
from otphsm.core.app.context import Actor, App
from otphsm.core.app.issuance import activation_mac_input
from otphsm.core.app.writes import LOST_RACE, LostRace, with_retries
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import AuthorisationRefused, FailedPrecondition, NotFound
from otphsm.core.records import Activation, ActivationMethod
from otphsm.core.seeds import SeedRef
from otphsm.core.tokens import Token, TokenState

ACTIVATION = "activation"
ACTIVATION_FAILURE = "activation_failure"
"""Units of work (`App.transaction`): their write points' prefixes."""


@dataclass(frozen=True, slots=True)
class ActivatedDevice:
    """What the device needs: never the seed, only the HSM's public point and parameters."""

    token: Token
    server_public_point: bytes
    issuer: str


def activate_with_code(
    app: App, actor: Actor, activation_code: str, device_public_point: bytes
) -> ActivatedDevice:
    code = normalise_activation_code(activation_code)
    macs = app.hsm.keyed_digests(activation_mac_input(ActivationMethod.CODE, "", code))
    # a code issued before a pepper rotation has its MAC under the older pepper
    activation = next(filter(None, map(app.store.find_activation_by_mac, macs)), None)
    if activation is None:
        raise NotFound("unknown activation code")
    return _activate(app, actor, activation, device_public_point)


def activate_with_temporary_secret(
    app: App, actor: Actor, codice_fiscale: str, secret: str, device_public_point: bytes
) -> ActivatedDevice:
    check_temporary_secret(secret)
    cf = validate_codice_fiscale(codice_fiscale).code
    now = app.now()
    pending = [
        a
        for a in app.store.activations_of(cf)
        if a.method is ActivationMethod.TEMPORARY_SECRET and a.used_at is None
    ]
    if not pending:
        raise NotFound("no temporary-secret activation is waiting for this citizen")
    activation = max(pending, key=lambda a: a.created_at)
    _refuse_unusable(activation, now)
    if activation.locked_until > now:
        raise FailedPrecondition(
            "too many wrong temporary secrets: wait before trying again",
            retry_after=activation.locked_until - now,
        )
    typed = activation_mac_input(ActivationMethod.TEMPORARY_SECRET, cf, secret)
    if not app.hsm.keyed_digest_matches(typed, activation.secret_mac):
        _count_failure(app, actor, activation, now)
    return _activate(app, actor, activation, device_public_point)


def _activate(
    app: App, actor: Actor, activation: Activation, device_public_point: bytes
) -> ActivatedDevice:
    """One unit of work: the activation marked used and the token given its seed, with the
    audit entry. The seed derived in it is destroyed if anything refuses."""
    now = app.now()
    _refuse_unusable(activation, now)
    token = app.store.get_token(activation.token_serial)
    if token is None or token.state is not TokenState.PENDING or token.seed is not None:
        raise FailedPrecondition("this activation no longer applies to a pending token")
    new_seeds: list[SeedRef] = []
    with app.transaction(ACTIVATION, new_seeds) as work:  # seeds are made inside (seeds.py)
        derived = app.hsm.derive_seed_ecdh(device_public_point, token.params.algorithm)
        new_seeds.append(derived.seed)
        activated = replace(token, seed=derived.seed)
        if not work.store.update_activation(replace(activation, used_at=now)):
            raise FailedPrecondition("this activation was just used")
        if not work.store.update_token(activated):
            raise FailedPrecondition("the token changed during activation: start again")
        work.audit(
            actor,
            "device_activated",
            token.serial,
            method=activation.method.value,
            codice_fiscale=token.codice_fiscale,
        )
    return ActivatedDevice(
        replace(activated, version=activated.version + 1),
        derived.server_public_point,
        app.policy.issuer,
    )


def _refuse_unusable(activation: Activation, now: int) -> None:
    if activation.used_at is not None:
        raise FailedPrecondition("this activation was already used")
    if activation.expires_at <= now:
        raise FailedPrecondition("this activation has expired: ask for a new one")


def _count_failure(app: App, actor: Actor, activation: Activation, now: int) -> NoReturn:
    """Count a wrong temporary secret (the third in a row starts a wait) with its audit entry,
    in one unit of work, then refuse."""
    policy = app.policy

    def count(current: Activation) -> tuple[Activation, str]:
        failures = current.failures + 1
        if failures >= policy.secret_failures_before_wait:
            wait = policy.secret_wait_seconds
            updated = replace(current, failures=0, locked_until=now + wait)
            return updated, f"wrong temporary secret: wait {wait} s before trying again"
        left = policy.secret_failures_before_wait - failures
        updated = replace(current, failures=failures)
        return updated, f"wrong temporary secret: {left} tries before a wait"

    def attempt(work: App) -> tuple[int, str] | LostRace:
        current = work.store.get_activation(activation.activation_id) or activation
        updated, message = count(current)
        if not work.store.update_activation(updated):
            return LOST_RACE
        return current.failures + 1, message

    with app.transaction(ACTIVATION_FAILURE) as work:
        failures, message = with_retries(work, lambda: attempt(work))
        work.audit(actor, "activation_secret_wrong", activation.token_serial, failures=failures)
    raise AuthorisationRefused(message)
