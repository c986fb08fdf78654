"""Pepper rotation on SoftHSM2: the audit chain verifies across it (each entry's MAC names the
pepper generation it was made with), and a code stored with the old pepper is still accepted
until it expires."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.hsm_fixtures import BARE_TOKEN

from otphsm.core.app import oob
from otphsm.core.app.audit import verify_audit
from otphsm.core.app.context import App
from otphsm.core.app.key_rotation import rotate_pepper
from otphsm.core.audit import verify_chain
from otphsm.core.certificates import TrustStore
from otphsm.core.clock import ManualClock
from otphsm.core.records import OobCode, OobPurpose
from otphsm.core.verification import VerifyResult
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.hsm import HsmSeedVault, open_vault
from otphsm.hsm.peppers import HsmPepperRing
from otphsm.hsm.provision import provision
from otphsm.hsm.session import HsmSessionOwner
from otphsm.store import open_store

pytestmark = pytest.mark.softhsm

NOW = 1_760_000_000
CF = "RSSMRA80A01H501U"


@pytest.fixture
def peppered(softhsm: Any, trust: TrustStore, tmp_path: Path) -> Iterator[tuple[App, str]]:
    """An app on pepper and KEK generations of its own (the session's tokens keep theirs)."""
    tag = secrets.token_hex(4)
    config = softhsm.token(BARE_TOKEN).hsm_config(
        kek_label=f"kek-p{tag}", pepper_label=f"pep-x{tag}"
    )
    with HsmSessionOwner(config) as owner:
        provision(owner, softhsm.so_pin)
    vault = open_vault(config)
    store = open_store(f"sqlite:///{tmp_path / 'otphsm.db'}")
    store.migrate()
    clock = ManualClock(NOW)
    yield (
        App(store, vault, clock, trust, OutboxSmsGateway(tmp_path / "sms.jsonl", clock)),
        config.pepper_label,
    )
    store.close()
    vault.close()


def test_the_audit_chain_and_stored_codes_survive_pepper_rotations(
    peppered: tuple[App, str],
) -> None:
    app, first = peppered
    vault = app.hsm
    assert isinstance(vault, HsmSeedVault)
    for n in range(3):
        app.audit("test", "before", f"entry-{n}")
    sms = oob.code_mac(app, CF, OobPurpose.LOGIN, "123456")
    app.store.insert_oob_code(OobCode("oob-1", CF, OobPurpose.LOGIN, sms, NOW, NOW + 600))
    assert len(sms) == 32  # the first pepper's MACs are as before rotation existed

    ring = HsmPepperRing(vault)
    assert rotate_pepper(app, ring) == f"{first}-2"
    for n in range(3):
        app.audit("test", "after", f"entry-{n}")
    assert rotate_pepper(app, ring) == f"{first}-3"
    app.audit("test", "after the second", "entry")
    assert ring.labels() == [first, f"{first}-2", f"{first}-3"]

    entries = list(app.store.audit_entries())
    assert [e.action for e in entries].count("pepper_rotated") == 2
    assert {len(e.mac) for e in entries} == {32, 35}  # both generations in one chain
    report = verify_audit(app)
    assert report.intact and report.entries == 9, report.findings

    new_mac = vault.keyed_digest(b"data")
    assert new_mac != sms and vault.keyed_digest_matches(b"data", new_mac)
    assert len(vault.keyed_digests(b"data")) == 3
    assert not vault.keyed_digest_matches(b"datA", new_mac)

    checked = oob.check_code(app, CF, OobPurpose.LOGIN, "123456")
    assert checked is not None and checked.result is VerifyResult.OK


def test_a_changed_entry_under_the_new_pepper_is_still_caught(peppered: tuple[App, str]) -> None:
    app, _ = peppered
    assert isinstance(app.hsm, HsmSeedVault)
    app.audit("test", "before", "x")
    rotate_pepper(app, HsmPepperRing(app.hsm))
    app.audit("test", "after", "x")
    entries = list(app.store.audit_entries())
    for mac in (b"\xfe\x00\x02" + bytes(32), b"\xfe\x00\x01" + bytes(32), bytes(32)):
        forged = [*entries[:-1], replace(entries[-1], mac=mac)]
        report = verify_chain(
            forged, app.hsm.keyed_digest, mac_matches=app.hsm.keyed_digest_matches
        )
        assert [f.problem.value for f in report.findings] == ["bad_mac"]


def test_a_rotation_cut_between_the_new_key_and_its_audit_entry(
    peppered: tuple[App, str],
) -> None:
    """A crash in the middle of `rotate-pepper`: the next pepper exists on the token but the
    rotation's audit entry was never written. After a restart the chain still verifies, codes
    stored before are still checked, and running the rotation again goes on to the next one."""
    app, first = peppered
    vault = app.hsm
    assert isinstance(vault, HsmSeedVault)
    app.audit("test", "before", "x")
    sms = oob.code_mac(app, CF, OobPurpose.LOGIN, "654321")
    app.store.insert_oob_code(OobCode("oob-2", CF, OobPurpose.LOGIN, sms, NOW, NOW + 600))
    assert HsmPepperRing(vault).create_next() == f"{first}-2"  # ... and the process dies

    restarted = open_vault(vault.owner.config)
    try:
        after = replace(app, hsm=restarted)
        after.audit("test", "after the restart", "x")
        assert verify_audit(after).intact
        checked = oob.check_code(after, CF, OobPurpose.LOGIN, "654321")
        assert checked is not None and checked.result is VerifyResult.OK
        assert rotate_pepper(after, HsmPepperRing(restarted)) == f"{first}-3"
        after.audit("test", "after the rerun", "x")
        entries = list(after.store.audit_entries())
        assert [e.action for e in entries].count("pepper_rotated") == 1
        report = verify_audit(after)
        assert report.intact and report.entries == 4, report.findings
    finally:
        restarted.close()
