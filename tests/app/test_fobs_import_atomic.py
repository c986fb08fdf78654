"""A vendor's file is imported all or nothing: whatever is wrong with it, or whatever fails
midway, the store and the HSM are left as they were (SoftHSM2 in resident mode, SQLite)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pkcs11 import Attribute, ObjectClass
from support.app_fixtures import OPERATOR
from support.fobs import HOTP, PASSWORD, PSK, TOTP_SHA256, batch

from otphsm.core.app.context import App
from otphsm.core.app.fobs import FobPackage, fob_inventory, import_fobs
from otphsm.core.certificates import TrustStore
from otphsm.core.clock import ManualClock
from otphsm.core.errors import FailedPrecondition, InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.ports import Conflict
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import Token
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.pskc import PskcProblem, PskcRefused, import_pskc, read_pskc
from otphsm.simulators.token.pskc_factory import pskc_document

pytestmark = pytest.mark.softhsm


def seed_objects(app: App) -> int:
    """Secret-key objects on the token (resident seeds, plus the KEK and pepper)."""

    def count(ctx: Any) -> int:
        return len(list(ctx.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})))

    return int(app.hsm.owner.run("counting objects", count))  # type: ignore[attr-defined]


@pytest.fixture
def resident_app(
    softhsm: Any, trust: TrustStore, app_clock: ManualClock, tmp_path: Path
) -> Iterator[App]:
    from otphsm.hsm import open_vault
    from otphsm.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'resident.db'}")
    store.migrate()
    vault = open_vault(softhsm.hsm_config(seed_storage=SeedStorage.RESIDENT))
    sms = OutboxSmsGateway(tmp_path / "sms-outbox.jsonl", app_clock)
    yield App(store=store, hsm=vault, clock=app_clock, trust=trust, sms=sms)
    vault.close()
    store.close()


def _flip_first(document: bytes, element: str, occurrence: int = 0) -> bytes:
    """Change one byte inside the base64 value of the n-th <pskc:element>."""
    pattern = re.compile(rb"(<pskc:" + element.encode() + rb">\s*)([^<\s]+)")
    match = list(pattern.finditer(document))[occurrence]
    raw = bytearray(base64.b64decode(match.group(2)))
    raw[len(raw) // 2] ^= 0x01
    return document[: match.start(2)] + base64.b64encode(raw) + document[match.end(2) :]


def _flip_cipher(document: bytes, occurrence: int) -> bytes:
    pattern = re.compile(rb"(<xenc:CipherValue>)([^<]+)")
    match = list(pattern.finditer(document))[occurrence]
    raw = bytearray(base64.b64decode(match.group(2)))
    raw[5] ^= 0x80  # in the IV: one plaintext bit changes, the padding stays; only a MAC tells
    return document[: match.start(2)] + base64.b64encode(raw) + document[match.end(2) :]


Tamper = Callable[[bytes], bytes]
REFUSALS: list[tuple[str, Tamper, dict[str, Any], PskcProblem]] = [
    ("bad-mac", lambda d: _flip_first(d, "ValueMAC", 2), {"psk": PSK}, PskcProblem.BAD_MAC),
    ("altered-secret", lambda d: _flip_cipher(d, 3), {"psk": PSK}, PskcProblem.BAD_MAC),
    ("wrong-psk", lambda d: d, {"psk": bytes(16)}, PskcProblem.WRONG_KEY),
    ("password-for-psk-file", lambda d: d, {"password": "x"}, PskcProblem.PROTECTION),
    ("malformed-xml", lambda d: d[: len(d) * 2 // 3], {"psk": PSK}, PskcProblem.MALFORMED),
    (
        "duplicate-serial",
        lambda d: d.replace(b"FOB-00001236</pskc:SerialNo>", b"FOB-00001234</pskc:SerialNo>"),
        {"psk": PSK},
        PskcProblem.DUPLICATE_SERIAL,
    ),
    (
        "missing-serial",
        lambda d: d.replace(b"<pskc:SerialNo>FOB-00001235</pskc:SerialNo>", b""),
        {"psk": PSK},
        PskcProblem.MISSING_SERIAL,
    ),
]


@pytest.mark.parametrize(
    ("tamper", "keys", "problem"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_refused_file_imports_nothing(
    resident_app: App, tamper: Tamper, keys: dict[str, Any], problem: PskcProblem
) -> None:
    app = resident_app
    document = tamper(pskc_document(batch(3), psk=PSK))
    before, objects = app.store.snapshot(), seed_objects(app)
    with pytest.raises(PskcRefused) as refused:
        import_pskc(app, OPERATOR, document, **keys)
    assert refused.value.problem is problem
    assert app.store.snapshot() == before
    assert seed_objects(app) == objects


def test_a_wrong_password_imports_nothing(resident_app: App) -> None:
    app = resident_app
    document = pskc_document(
        batch(2, params=TOTP_SHA256), password=PASSWORD, pbkdf2_iterations=1000
    )
    before, objects = app.store.snapshot(), seed_objects(app)
    with pytest.raises(PskcRefused, match="password is wrong") as refused:
        import_pskc(app, OPERATOR, document, password=PASSWORD + "!")
    assert refused.value.problem is PskcProblem.WRONG_KEY
    assert (app.store.snapshot(), seed_objects(app)) == (before, objects)


def test_a_serial_already_imported_refuses_the_whole_second_file(resident_app: App) -> None:
    app = resident_app
    import_pskc(app, OPERATOR, pskc_document(batch(2, first=10), psk=PSK), psk=PSK)
    before, objects = app.store.snapshot(), seed_objects(app)
    overlapping = pskc_document(batch(3, first=11), psk=PSK)  # 11 is in, 12 and 13 are new
    with pytest.raises(FailedPrecondition, match="already imported: FOB-00000011"):
        import_pskc(app, OPERATOR, overlapping, psk=PSK)
    assert (app.store.snapshot(), seed_objects(app)) == (before, objects)


class _HsmFailingAt:
    """The real HSM, except that the n-th seed import fails (a device lost mid-batch)."""

    def __init__(self, hsm: Any, fail_at: int) -> None:
        self._hsm, self._left, self.destroyed = hsm, fail_at, 0

    def import_seed(self, secret: bytearray | bytes, algorithm: HashAlgorithm) -> SeedRef:
        self._left -= 1
        if self._left == 0:
            raise RuntimeError("HSM gone")
        return self._hsm.import_seed(secret, algorithm)  # type: ignore[no-any-return]

    def destroy_seed(self, seed: SeedRef) -> None:
        self.destroyed += 1
        self._hsm.destroy_seed(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hsm, name)


def test_an_hsm_failure_midway_leaves_no_seed_and_no_row(resident_app: App) -> None:
    app = resident_app
    packages = read_pskc(pskc_document(batch(4), psk=PSK), psk=PSK)
    failing = _HsmFailingAt(app.hsm, fail_at=3)
    before, objects = app.store.snapshot(), seed_objects(app)
    with pytest.raises(RuntimeError, match="HSM gone"):
        import_fobs(replace(app, hsm=failing), OPERATOR, packages)
    assert failing.destroyed == 2
    assert (app.store.snapshot(), seed_objects(app)) == (before, objects)
    assert all(not any(p.secret) for p in packages)  # the host copies are wiped either way


class _StoreFailingAt:
    def __init__(self, store: Any, fail_at: int) -> None:
        self._store, self._left = store, fail_at

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._store.transaction() as work:
            yield _StoreFailingAt(work, self._left)

    def insert_token(self, token: Token) -> None:
        self._left -= 1
        if self._left == 0:
            raise Conflict("a concurrent import took this serial")
        self._store.insert_token(token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_store_failure_midway_writes_nothing(resident_app: App) -> None:
    """The file is one unit of work: the rows written before the failure are rolled back
    with it (no withdrawn fobs left behind), and the seeds are destroyed."""
    app = resident_app
    packages = read_pskc(pskc_document(batch(3, first=40), psk=PSK), psk=PSK)
    before, objects = app.store.snapshot(), seed_objects(app)
    with pytest.raises(Conflict):
        import_fobs(replace(app, store=_StoreFailingAt(app.store, 3)), OPERATOR, packages)
    assert (app.store.snapshot(), seed_objects(app)) == (before, objects)
    assert [app.store.get_token(f"FOB-000000{n}") for n in (40, 41, 42)] == [None] * 3
    assert fob_inventory(app) == []


def test_the_use_case_checks_packages_from_any_source(app: App) -> None:
    def package(serial: str, secret: bytes = bytes(range(20)), counter: int = 0) -> FobPackage:
        return FobPackage(serial, bytearray(secret), HOTP, counter)

    before = app.store.snapshot()
    for packages, message in [
        ([], "no key fob"),
        ([package("FOB-00000001"), package("fob 2")], "#2: bad serial"),
        ([package("FOB-00000001", bytes(15))], "16..64 bytes"),
        ([package("FOB-00000001", counter=-1)], "counter"),
        ([package("FOB-00000001"), package("FOB-00000001")], "more than once"),
        ([FobPackage("FOB-00000001", bytearray(20), TOTP_SHA256, 3)], "no counter"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            import_fobs(app, OPERATOR, packages)
        assert all(not any(p.secret) for p in packages)
    assert app.store.snapshot() == before
