"""The demo's story, told and checked step by step against the running parts of `DemoWorld`:
card-authorised enrolment through pcscd → secure activation on the emulated phone → logins →
a replayed code → three wrong codes → locked → released → phone lost, replaced after an SMS
code → a key fob imported from a PSKC file and used → the audit chain and the server log.

Every step states what should happen and `expect` checks it; the first surprise raises
`DemoFailure`. Tokens are issued with 10-second codes so that the story, which needs a fresh
time step for each login, does not keep anyone waiting (the service's default is 30 s).
"""

from __future__ import annotations

import base64
import hmac
import re
import time
from collections.abc import Callable
from pathlib import Path

from otphsm.client import Operator, ServiceRefused, Verifier, VerifyOutcome
from otphsm.client.station import Station
from otphsm.core.clock import SystemClock
from otphsm.core.otp import hotp
from otphsm.core.records import ActivationMethod
from otphsm.core.tokens import OtpMode, OtpParameters, TokenState
from otphsm.core.verification import VerifyResult
from otphsm.demo.world import CARD_PIN, DemoWorld
from otphsm.simulators.token.app_state import Account
from otphsm.simulators.token.grpc_gateway import GrpcDeviceGateway
from otphsm.simulators.token.keyfob import KeyFob
from otphsm.simulators.token.mobile_app import AppStore, MobileApp
from otphsm.simulators.token.pskc_factory import BatchSpec, make_batch_file
from otphsm.smartcard.cns import CardContents

PERIOD = 10
APP_PIN = "24680"
PHONE = "+393331234567"
FOB_PASSWORD = "demo-vendor-password"  # noqa: S105 (the simulated vendor's test password)
WRONG_CARD_PIN = "11112222"


class DemoFailure(AssertionError):
    pass


class Narrator:
    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write
        self.secrets: list[str] = []
        """Everything that must never show up in the server's log."""

    def step(self, title: str) -> None:
        self.write(f"\n== {title}")

    def say(self, text: str) -> None:
        self.write(f"   {text}")

    def expect(self, condition: bool, what: str) -> None:
        self.write(f"   {'ok  ' if condition else 'FAIL'} {what}")
        if not condition:
            raise DemoFailure(what)


class ScriptedCard:
    """The citizen at the counter (`otphsm.client.station.CardEvents`): types a wrong PIN
    first, if asked to."""

    def __init__(self, narrator: Narrator, pins: list[str]) -> None:
        self.narrator = narrator
        self.pins = list(pins)
        self.tries_left_seen: list[int] = []

    def waiting_for_card(self, reader: str | None, seconds_left: float) -> None:
        self.narrator.say("waiting for the card…")

    def card_read(self, reader: str, contents: CardContents) -> None:
        data = contents.personal_data
        self.narrator.say(
            f"card {contents.card_id} in {reader}: {data.given_name} "
            f"{data.surname}, {data.codice_fiscale}"
        )

    def ask_pin(self, tries_left: int | None) -> str:
        if tries_left is not None:
            self.tries_left_seen.append(tries_left)
            self.narrator.say(f"the station says: wrong PIN, {tries_left} tries left")
        pin = self.pins.pop(0)
        self.narrator.say("the citizen types the card PIN (no echo)")
        return pin

    def signing(self) -> None:
        self.narrator.say("PIN right; the card signs the service's fresh challenge")


def wait_next_step(narrator: Narrator) -> None:
    left = PERIOD - time.time() % PERIOD
    narrator.say(f"({left:.1f} s until the next code)")
    time.sleep(left + 0.05)


class Scene:
    """The cast (station, relying party, operator, the citizen's phones) and the acts."""

    def __init__(self, world: DemoWorld, narrator: Narrator, directory: Path) -> None:
        assert world.citizen is not None
        self.world = world
        self.narrator = narrator
        self.directory = directory
        self.cf = world.citizen.codice_fiscale
        self.station = Station(world.client("enroller"))
        self.verifier = Verifier(world.client("verifier"))
        self.operator = Operator(world.client("admin"))
        self.gateway = GrpcDeviceGateway(world.client("device"))

    def login(self, code: str, serial: str = "") -> VerifyOutcome:
        """A portal login: by codice fiscale, or against one token when `serial` is given."""
        return self.verifier.verify(code, serial=serial, codice_fiscale=self.cf)

    def state_of(self, serial: str) -> TokenState:
        return self.operator.get_token(serial).state

    def phone(self, name: str, activation_code: str) -> MobileApp:
        """A phone with the app, activated with `activation_code` (secure ECDH activation)."""
        phone = MobileApp(SystemClock(), AppStore(self.directory / f"{name}.json"))
        activated = phone.activate_with_code(self.gateway, activation_code, new_pin=APP_PIN)
        self.narrator.secrets.extend([APP_PIN, activated.account.secret.hex()])
        self.narrator.expect(activated.proof.ok, "the phone's first code proves possession")
        return phone

    # --- the acts -----------------------------------------------------------------------

    def enrol(self) -> str:
        """Card authorisation through pcscd and a token with an activation code; its code."""
        say, expect = self.narrator.say, self.narrator.expect
        self.narrator.step(
            "Card-authorised enrolment at the counter (otphsm enrol new), through pcscd"
        )
        citizen = ScriptedCard(self.narrator, [WRONG_CARD_PIN, CARD_PIN])
        self.narrator.secrets.extend([WRONG_CARD_PIN, CARD_PIN])
        authorised = self.station.authorise_with_card(self.world.reader, citizen)
        expect(citizen.tries_left_seen == [2], "a wrong PIN is refused with 2 tries left")
        expect(authorised.codice_fiscale == self.cf, f"the service authorised {self.cf}")
        self.station.set_phone_number(self.cf, PHONE)
        issued = self.station.issue_token(
            authorised.authorisation_id, ActivationMethod.CODE, period=PERIOD
        )
        self.narrator.secrets.extend(
            [issued.activation_code, issued.activation_code.replace("-", "")]
        )
        png = self.directory / "activation.png"
        png.write_bytes(issued.qr_png)
        say(
            f"token {issued.token.serial} created, pending; activation code "
            f"{issued.activation_code}, and its QR (also in {png}):"
        )
        for line in issued.qr_text.splitlines():
            self.narrator.write(f"     {line}")
        expect(issued.token.state is TokenState.PENDING, "the token waits")
        return issued.activation_code

    def activate(self, activation_code: str) -> tuple[MobileApp, str]:
        self.narrator.step(
            "Secure activation on the citizen's phone (otphsm token activate --code …)"
        )
        phone = self.phone("phone", activation_code)
        self.narrator.say(
            "the phone sent an ephemeral P-256 key; phone and HSM derived the "
            "same seed by ECDH; the seed never travelled"
        )
        serial = phone.find().serial
        active = self.state_of(serial) is TokenState.ACTIVE
        self.narrator.expect(active, f"{serial} is active")
        return phone, serial

    def logins_and_lock(self, phone: MobileApp, serial: str) -> str:
        """Login, replay, three wrong codes, locked, unlocked, login; the last code used."""
        expect, ok = self.narrator.expect, VerifyResult.OK
        self.narrator.step("Logins on a citizen portal (ValidationService.Verify by CF)")
        wait_next_step(self.narrator)
        code = phone.code().code
        expect(self.login(code).result is ok, "the phone's code: OK")
        expect(
            self.login(code).result is VerifyResult.REPLAYED,
            "the same code again: REPLAYED (a code is accepted once, ever)",
        )

        self.narrator.step("Three wrong codes lock the token (the replay counted as no failure)")
        wrong = _wrong_code(phone.find(), time.time())
        results = [self.login(wrong) for _ in range(4)]
        names = [r.result.name for r in results]
        self.narrator.say(f"results: {', '.join(names)}; retry after {results[2].retry_after} s")
        expect(
            names == ["WRONG_CODE", "WRONG_CODE", "WRONG_CODE", "LOCKED"],
            "3 failures in a row lock it; then it answers LOCKED",
        )
        expect(
            self.login(code).result is VerifyResult.LOCKED,
            "while locked, no code is even computed",
        )

        self.narrator.step("Released by an operator (AdminService.Unlock)")
        unlocked = self.operator.unlock(serial)
        expect(unlocked.failures == 0 and unlocked.locked_until == 0, "unlocked")
        wait_next_step(self.narrator)
        code = phone.code().code
        expect(self.login(code).result is ok, "the next code logs in again")
        return code

    def replace_phone(self, serial: str, old_code: str) -> None:
        expect = self.narrator.expect
        self.narrator.step("Phone lost: replaced after an SMS code (otphsm enrol replace --sms)")
        self.station.send_sms_code(self.cf)
        texts = self.world.sms_texts(PHONE)
        found = re.search(r"\b(\d{6})\b", texts[-1]) if texts else None
        expect(found is not None, f"an SMS went to {PHONE[:3]}…{PHONE[-3:]} (the outbox)")
        assert found is not None
        self.narrator.secrets.append(found.group(1))
        by_sms = self.station.authorise_with_sms_code(self.cf, found.group(1))
        self.narrator.say("the citizen reads the code to the technician: authorised")
        reissued = self.station.issue_token(
            by_sms.authorisation_id, ActivationMethod.CODE, period=PERIOD
        )
        code = reissued.activation_code
        self.narrator.secrets.extend([code, code.replace("-", "")])
        expect(reissued.token.replaces_serial == serial, f"the new token replaces {serial}")
        self.phone("new-phone", reissued.activation_code)
        expect(
            self.state_of(serial) is TokenState.REVOKED,
            f"the lost phone's token {serial} is revoked",
        )
        expect(
            self.login(old_code, serial).result is VerifyResult.REVOKED,
            "a code from the lost phone: REVOKED",
        )

    def closing(self) -> None:
        self.narrator.step("The audit chain and the server's log")
        report = self.operator.verify_audit()
        self.narrator.expect(
            report.intact, f"{report.entries} audit entries, hash-chained and HSM-MACed"
        )
        log = self.world.server_log()
        leaked = [s for s in self.narrator.secrets if s and s in log]
        self.narrator.expect(
            not leaked, "no PIN, activation code, SMS code or seed in the server's log"
        )


def play(world: DemoWorld, narrator: Narrator, directory: Path) -> None:
    scene = Scene(world, narrator, directory)
    activation_code = scene.enrol()
    phone, serial = scene.activate(activation_code)
    last_code = scene.logins_and_lock(phone, serial)
    scene.replace_phone(serial, last_code)
    fob_story(scene)
    scene.closing()


def fob_story(scene: Scene) -> None:
    narrator, operator = scene.narrator, scene.operator
    narrator.step("Key fobs: the vendor's PSKC file (otphsm admin import-pskc)")
    params = OtpParameters(mode=OtpMode.HOTP)
    first = int(time.time()) % 90_000_000
    path = scene.directory / "fobs.pskc"
    fobs = make_batch_file(
        path, BatchSpec(3, first, params), password=FOB_PASSWORD, pbkdf2_iterations=20_000
    )
    document = path.read_bytes()
    narrator.secrets.extend(fob.secret.hex() for fob in fobs)
    narrator.say(
        f"{len(fobs)} HOTP fobs {fobs[0].serial} … {fobs[-1].serial}, seeds encrypted "
        "under a password (PBKDF2) and MACed"
    )
    reason = ""
    try:
        operator.import_pskc(_tamper(document), password=FOB_PASSWORD)
    except ServiceRefused as refused:
        reason = refused.reason
        narrator.say(f"a copy altered in transit: {refused}")
    narrator.expect(reason == "BAD_MAC", "the altered file is refused whole (BAD_MAC)")
    try:
        operator.get_token(fobs[0].serial)
        imported_anyway = True
    except ServiceRefused:
        imported_anyway = False
    narrator.expect(not imported_anyway, "and nothing of it was imported")
    imported = operator.import_pskc(document, password=FOB_PASSWORD)
    narrator.expect(len(imported) == len(fobs), "the genuine file: 3 fobs in inventory")

    narrator.step("A fob for the citizen (otphsm enrol assign-fob SERIAL), card in the reader")
    fob: KeyFob = fobs[0]
    citizen = ScriptedCard(narrator, [CARD_PIN])
    authorised = scene.station.authorise_with_card(scene.world.reader, citizen)
    token, proof = scene.station.assign_fob(authorised.authorisation_id, fob.serial, fob.press())
    narrator.expect(
        proof is not None and proof.ok,
        f"the fob's first code proves the citizen holds {fob.serial}",
    )
    narrator.expect(token.state is TokenState.ACTIVE, "the fob is active")
    result = scene.login(fob.press())
    narrator.expect(
        result.ok and result.serial == fob.serial,
        "a login by codice fiscale with the fob's next press: OK",
    )


def _wrong_code(account: Account, now: float) -> str:
    """A code the phone shows at no time step near `now`."""
    name = account.params.algorithm.hashlib_name
    step = int(now) // account.params.period
    near = {
        hotp(lambda m: hmac.new(account.secret, m, name).digest(), s, account.params.digits)
        for s in range(step - 3, step + 4)
    }
    return next(c for c in (f"{i:06d}" for i in range(10**6)) if c not in near)


def _tamper(document: bytes) -> bytes:
    """Flip one bit of the first encrypted secret's IV, as a corrupted transfer would."""
    match = re.search(rb"(<xenc:CipherValue>)([^<]+)", document)
    assert match is not None
    raw = bytearray(base64.b64decode(match.group(2)))
    raw[5] ^= 0x80
    return document[: match.start(2)] + base64.b64encode(raw) + document[match.end(2) :]
