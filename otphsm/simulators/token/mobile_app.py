"""The emulated token app on a citizen's phone (what `otphsm token …` drives).

- Secure activation: the app makes an ephemeral P-256 key, sends its public half with the
  18-digit activation code (or the 5-digit temporary secret and the codice fiscale), and
  derives the seed by ECDH from the HSM's public key; then it proves possession with its first
  code. Compatibility mode reads an `otpauth://` URI instead, locally, without the service.
- One app per account: activating an account the app already holds (same issuer and codice
  fiscale) replaces it, as the service replaces the old device once the new one proves
  possession.
- The app PIN (5 digits, set at the first activation) is asked before a code is shown, then
  remembered for `remember_seconds` (0, 5 or 10 minutes, the citizen's choice).
  `MAX_PIN_FAILURES` wrong PINs in a row wipe every account and the PIN.
- The phone's clock is the injected clock plus `skew_seconds`, to reproduce a phone with the
  wrong time. The PIN window runs on the injected clock (elapsed time), not on the skewed one.
- The inbox: the push notifications (out-of-band login codes) the simulated push service
  delivered to the tokens of the app's accounts, read from its per-device outbox directory.
  They carry codes, so the PIN is asked first, as for a code.

Every change is written to the state file at once (`AppStore`), wrong PINs included, so
quitting the app does not reset the count.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otphsm.core.activation import check_temporary_secret, normalise_activation_code
from otphsm.core.clock import Clock
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import AuthorisationRefused, FailedPrecondition, InvalidInput, NotFound
from otphsm.core.otp import hotp, totp
from otphsm.core.tokens import OtpMode
from otphsm.simulators.sms.inbox import read_push_messages
from otphsm.simulators.token.app_state import (
    Account,
    AppState,
    Origin,
    check_app_pin,
    load_state,
    save_state,
)
from otphsm.simulators.token.device_gateway import DeviceActivation, DeviceGateway, Proof
from otphsm.simulators.token.otpauth import parse_otpauth

MAX_PIN_FAILURES = 5
REMEMBER_CHOICES = (0, 300, 600)
"""Seconds the PIN is remembered: ask at every code, 5 minutes or 10 minutes."""


class PinRequired(FailedPrecondition):
    """The app is locked: unlock it with the PIN first."""


class WrongAppPin(AuthorisationRefused):
    def __init__(self, tries_left: int) -> None:
        plural = "try" if tries_left == 1 else "tries"
        super().__init__(f"wrong app PIN: {tries_left} {plural} left before the accounts are wiped")
        self.tries_left = tries_left


class AccountsWiped(AuthorisationRefused):
    def __init__(self) -> None:
        super().__init__(
            f"{MAX_PIN_FAILURES} wrong app PINs: every account was wiped; activate again"
        )


@dataclass(frozen=True, slots=True)
class ShownCode:
    account: Account
    code: str
    seconds_left: int | None
    """TOTP: seconds until the code changes (by the phone's clock). HOTP: None."""


@dataclass(frozen=True, slots=True)
class Activated:
    account: Account
    proof: Proof
    replaced: bool
    """The app already held this account: the new activation took its place."""


@dataclass(frozen=True, slots=True)
class Notification:
    account: Account
    """The account whose token (serial) the notification was pushed to."""
    at: float
    """When the push service delivered it (seconds since the epoch, the true time)."""
    text: str


class AppStore:
    """Where the state lives; `None` path keeps it in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> AppState:
        return load_state(self.path) if self.path is not None else AppState()

    def save(self, state: AppState) -> None:
        if self.path is not None:
            save_state(self.path, state)


class MobileApp:
    def __init__(
        self,
        clock: Clock,
        store: AppStore | None = None,
        *,
        new_key: Callable[[], ec.EllipticCurvePrivateKey] | None = None,
    ) -> None:
        self.clock = clock
        self.store = store or AppStore(None)
        self.state = self.store.load()
        self._new_key = new_key or (lambda: ec.generate_private_key(ec.SECP256R1()))
        self._unlocked = False

    # --- the phone --------------------------------------------------------------------

    def device_time(self) -> float:
        return self.clock.now() + self.state.skew_seconds

    def configure(self, *, skew: float | None = None, remember: int | None = None) -> None:
        if remember is not None:
            if remember not in REMEMBER_CHOICES:
                raise InvalidInput("the PIN is remembered 0, 300 or 600 seconds")
            self.state.remember_seconds = remember
            self.state.unlocked_until = min(self.state.unlocked_until, self.clock.now() + remember)
        if skew is not None:
            self.state.skew_seconds = float(skew)
        self._save()

    # --- the app PIN ------------------------------------------------------------------

    @property
    def has_pin(self) -> bool:
        return self.state.has_pin

    def pin_needed(self) -> bool:
        """True when the next code (or activation) must first be unlocked with the PIN."""
        if not self.state.has_pin or self._unlocked:
            return False
        return self.clock.now() >= self.state.unlocked_until

    def unlock(self, pin: str) -> None:
        """Check the PIN; a right one is remembered for the chosen time. Raises `WrongAppPin`
        (with the tries left) or, at the last try, wipes the app and raises `AccountsWiped`."""
        if not self.state.has_pin:
            raise FailedPrecondition("the app has no PIN yet: activate an account first")
        if self.state.pin_matches(pin):
            self.state.pin_failures = 0
            self.state.unlocked_until = self.clock.now() + self.state.remember_seconds
            self._unlocked = True
            self._save()
            return
        self.state.pin_failures += 1
        if self.state.pin_failures >= MAX_PIN_FAILURES:
            self.state.wipe()
            self._unlocked = False
            self._save()
            raise AccountsWiped
        self._save()
        raise WrongAppPin(MAX_PIN_FAILURES - self.state.pin_failures)

    def lock(self) -> None:
        """Forget a remembered PIN (the next code asks for it)."""
        self._unlocked = False
        self.state.unlocked_until = 0.0
        self._save()

    def _require_unlocked(self) -> None:
        if self.pin_needed():
            raise PinRequired("enter the app PIN first")

    def _prepare_pin(self, new_pin: str | None) -> None:
        """Before adding an account: a first account sets the PIN, later ones need it."""
        if self.state.has_pin:
            self._require_unlocked()
        elif new_pin is None:
            raise PinRequired("choose a 5-digit app PIN for this first account")
        else:
            check_app_pin(new_pin)

    def _commit_pin(self, new_pin: str | None) -> None:
        if not self.state.has_pin and new_pin is not None:
            self.state.set_pin(new_pin)
            self.state.unlocked_until = self.clock.now() + self.state.remember_seconds
            self._unlocked = True

    # --- accounts and codes -------------------------------------------------------------

    @property
    def accounts(self) -> list[Account]:
        return list(self.state.accounts)

    def find(self, wanted: str | None = None) -> Account:
        """By name, codice fiscale or serial (or a part of one); the only account if None."""
        accounts = self.state.accounts
        if not accounts:
            raise NotFound("the app holds no account: activate one first")
        if wanted is None:
            if len(accounts) > 1:
                names = ", ".join(a.name for a in accounts)
                raise InvalidInput(f"the app holds several accounts; name one of: {names}")
            return accounts[0]
        needle = wanted.casefold()
        exact = [a for a in accounts if needle in (a.name.casefold(), a.serial.casefold())]
        found = exact or [
            a for a in accounts if needle in a.name.casefold() or needle in a.serial.casefold()
        ]
        if len(found) != 1:
            what = "no account" if not found else "several accounts"
            raise NotFound(f"{what} match {wanted!r}")
        return found[0]

    def code(self, wanted: str | None = None) -> ShownCode:
        self._require_unlocked()
        account = self.find(wanted)
        return self._show(account)

    def codes(self) -> list[ShownCode]:
        self._require_unlocked()
        return [self._show(account) for account in self.state.accounts]

    def inbox(self, push_outbox: Path) -> list[Notification]:
        """The notifications pushed to the tokens of the app's accounts, newest first (of two
        with the same time, the one delivered later first). An account scanned from a URI has
        no token serial and receives nothing."""
        self._require_unlocked()
        received = [
            Notification(account, message.at, message.text)
            for account in self.state.accounts
            if account.serial
            for message in reversed(read_push_messages(push_outbox, account.serial))
        ]
        return sorted(received, key=lambda notification: notification.at, reverse=True)

    def remove(self, wanted: str) -> Account:
        self._require_unlocked()
        account = self.find(wanted)
        self.state.accounts.remove(account)
        self._save()
        return account

    def _show(self, account: Account) -> ShownCode:
        mac = _hmac_fn(account)
        params = account.params
        if params.mode is OtpMode.HOTP:
            code = hotp(mac, account.counter, params.digits)
            account.counter += 1
            self._save()
            return ShownCode(account, code, None)
        now = self.device_time()
        left = params.period - int(now) % params.period
        return ShownCode(account, totp(mac, now, params.period, params.digits), left)

    # --- adding accounts --------------------------------------------------------------

    def activate_with_code(
        self, gateway: DeviceGateway, code: str, *, new_pin: str | None = None
    ) -> Activated:
        digits = normalise_activation_code(code)
        self._prepare_pin(new_pin)
        key = self._new_key()
        activation = gateway.activate_with_code(digits, public_point(key))
        return self._complete(gateway, key, activation, Origin.ACTIVATION_CODE, new_pin)

    def activate_with_temporary_secret(
        self,
        gateway: DeviceGateway,
        codice_fiscale: str,
        secret: str,
        *,
        new_pin: str | None = None,
    ) -> Activated:
        cf = validate_codice_fiscale(codice_fiscale).code
        check_temporary_secret(secret)
        self._prepare_pin(new_pin)
        key = self._new_key()
        activation = gateway.activate_with_temporary_secret(cf, secret, public_point(key))
        return self._complete(gateway, key, activation, Origin.TEMPORARY_SECRET, new_pin)

    def prove(self, gateway: DeviceGateway, wanted: str | None = None) -> Proof:
        """Send the current code as proof of possession (again, e.g. after fixing the clock)."""
        self._require_unlocked()
        account = self.find(wanted)
        if not account.serial:
            raise InvalidInput(f"{account.name} was scanned from a URI: the service knows nothing")
        proof = gateway.prove_possession(account.serial, self._show(account).code)
        account.confirmed = account.confirmed or proof.ok
        self._save()
        return proof

    def add_uri(self, uri: str, *, new_pin: str | None = None) -> Account:
        """Compatibility mode: an account from an otpauth:// URI (local only)."""
        parsed = parse_otpauth(uri)
        self._prepare_pin(new_pin)
        account = Account(
            issuer=parsed.issuer,
            account=parsed.account,
            secret=parsed.secret,
            params=parsed.params,
            origin=Origin.OTPAUTH,
            counter=parsed.counter,
            added_at=int(self.clock.now()),
        )
        self._commit_pin(new_pin)
        self._install(account)
        self._save()
        return account

    def _complete(
        self,
        gateway: DeviceGateway,
        key: ec.EllipticCurvePrivateKey,
        activation: DeviceActivation,
        origin: str,
        new_pin: str | None,
    ) -> Activated:
        account = Account(
            issuer=activation.issuer,
            account=activation.codice_fiscale,
            secret=derive_seed(key, activation.server_public_key),
            params=activation.params,
            origin=origin,
            serial=activation.serial,
            confirmed=False,
            added_at=int(self.clock.now()),
        )
        self._commit_pin(new_pin)
        replaced = self._install(account)
        self._save()  # the seed is kept before anything else can fail
        proof = gateway.prove_possession(account.serial, self._show(account).code)
        account.confirmed = proof.ok
        self._save()
        return Activated(account, proof, replaced)

    def _install(self, account: Account) -> bool:
        same = [a for a in self.state.accounts if a.name == account.name]
        for old in same:
            self.state.accounts.remove(old)
        self.state.accounts.append(account)
        return bool(same)

    def _save(self) -> None:
        self.store.save(self.state)


def _hmac_fn(account: Account) -> Callable[[bytes], bytes]:
    name = account.params.algorithm.hashlib_name
    return lambda message: hmac.new(account.secret, message, name).digest()


def public_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The phone's half of the secure activation: its P-256 public key, uncompressed."""
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def derive_seed(key: ec.EllipticCurvePrivateKey, server_public_key: bytes) -> bytes:
    """The seed the phone derives by ECDH with the HSM's public key (the HSM derives the same)."""
    server_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_public_key)
    return key.exchange(ec.ECDH(), server_key)
