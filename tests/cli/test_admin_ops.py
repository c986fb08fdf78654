"""The operator's commands (`otphsm admin token|grid|fob|audit …`) and the relying party's
(`otphsm verify`, `otphsm grid answer`) against a real `otphsm serve` process on SoftHSM2, on
SQLite and on PostgreSQL: each command's happy path, its `--json` output parsed and checked
against what the service holds, and its refusal (exit 4, one clear line, nothing changed) for
a certificate without the admin role."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.cli_support import CF, Run, run_cli
from support.pdf_checks import pdf_text, read_grid
from support.service_devices import TokenApp
from support.service_fixtures import service_config
from support.store_records import authorisation, citizen

from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.service.devpki import DevPki
from otphsm.simulators.deployment import start_serve, write_config
from otphsm.simulators.sms.inbox import read_sms_messages
from otphsm.simulators.token.pskc_factory import BatchSpec, make_batch_file
from otphsm.store.urls import sqlite_url
from otphsm.v1 import (
    common_pb2,
    device_pb2,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
    grid_pb2,
    grid_pb2_grpc,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.timeout(240)]

PSK = bytes(range(16))
FOBS = 3
SECRET_KEYS = {"seed", "secret", "pin", "pin_hash", "seed_data", "key", "activation_code"}


@dataclass
class Deployed:
    """A running `otphsm serve` holding: FOBS fobs in inventory, the citizen CF's active
    phone (`phone`, HOTP) and an active Security Card (`grid_serial`)."""

    port: int
    pki: DevPki
    phone: TokenApp
    grid_serial: str
    fob_serials: list[str]
    grid_values: dict[int, str]
    """The Security Card's cells as printed on its PDF."""

    def args(self, role: str = "admin") -> list[str]:
        directory = self.pki.directory
        return [
            "--server",
            f"localhost:{self.port}",
            "--ca",
            str(self.pki.ca),
            "--cert",
            str(directory / f"{role}.pem"),
            "--key",
            str(directory / f"{role}-key.pem"),
        ]

    def channel(self, role: str) -> grpc.Channel:
        directory = self.pki.directory
        credentials = grpc.ssl_channel_credentials(
            self.pki.ca.read_bytes(),
            (directory / f"{role}-key.pem").read_bytes(),
            (directory / f"{role}.pem").read_bytes(),
        )
        return grpc.secure_channel(f"localhost:{self.port}", credentials)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def deployed(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployed]:
    softhsm = request.getfixturevalue("serve_softhsm")
    pki: DevPki = request.getfixturevalue("dev_pki")
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_store_url")
    else:
        url = sqlite_url(tmp_path / "otphsm.db")
    raw = service_config(tmp_path, softhsm, pki, request.getfixturevalue("card_ca_files"), url)
    raw["metrics"]["enabled"] = False
    config = write_config(tmp_path / "otphsm.toml", raw)
    # The citizen and two authorisations as its card would leave them (the card step is
    # covered elsewhere; the cards' test PKI is not valid at today's date).
    assembly = assemble(load_config(config, env={}))
    try:
        app = assembly.app
        app.store.upsert_citizen(citizen(CF))
        now = int(app.now())
        for_phone, for_grid = "au-phone", "au-grid"
        for each in (for_phone, for_grid):
            app.store.insert_authorisation(
                authorisation(each, codice_fiscale=CF, created_at=now, expires_at=now + 300)
            )
    finally:
        assembly.close()
    server = start_serve(config, softhsm)
    try:
        port = server.wait_serving()
        deployment = Deployed(port, pki, TokenApp(), "", [], {})
        enroller = deployment.channel("enroller")
        issued = enrolment_pb2_grpc.EnrolmentServiceStub(enroller).IssueToken(
            enrolment_pb2.IssueTokenRequest(
                authorisation_id=for_phone,
                params=common_pb2.OtpParameters(mode=common_pb2.OTP_MODE_HOTP),
            )
        )
        device = device_pb2_grpc.DeviceServiceStub(deployment.channel("device"))
        phone = deployment.phone
        phone.complete(
            device.ActivateWithCode(
                device_pb2.ActivateWithCodeRequest(
                    activation_code=issued.activation_code, device_public_key=phone.public_key
                )
            )
        )
        proved = device.ProvePossession(
            device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.counter_code(0))
        )
        assert proved.result == common_pb2.VERIFY_RESULT_OK
        card = grid_pb2_grpc.GridCardServiceStub(enroller).IssueGridCard(
            grid_pb2.IssueGridCardRequest(authorisation_id=for_grid)
        )
        deployment.grid_serial = card.card.serial
        deployment.grid_values = read_grid(pdf_text(card.pdf, tmp_path))
        pskc = tmp_path / "fobs.pskc"
        fobs = make_batch_file(pskc, BatchSpec(FOBS, 4321, OtpParameters(OtpMode.HOTP)), psk=PSK)
        deployment.fob_serials = [fob.serial for fob in fobs]
        imported = run_cli(
            capsys,
            monkeypatch,
            ["admin", "import-pskc", pskc, "--psk", PSK.hex(), *deployment.args()],
        )
        assert imported.code == 0, imported.err
        yield deployment
    finally:
        server.stop()


def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    deployment: Deployed,
    *argv: object,
    role: str = "admin",
) -> Run:
    return run_cli(capsys, monkeypatch, [*argv, *deployment.args(role)])


def as_json(run: Run) -> Any:
    assert run.code == 0, run.err
    return json.loads(run.out)


def keys_of(document: Any) -> set[str]:
    """Every key anywhere in a JSON document."""
    if isinstance(document, dict):
        return set(document) | {k for v in document.values() for k in keys_of(v)}
    if isinstance(document, list):
        return {k for v in document for k in keys_of(v)}
    return set()


def test_token_and_fob_listings_filter_page_and_show_no_secret(
    deployed: Deployed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = lambda *argv: cli(capsys, monkeypatch, deployed, *argv)  # noqa: E731
    listing = as_json(run("admin", "token", "list", "--json"))
    tokens = listing["tokens"]
    assert {t["serial"] for t in tokens} == {deployed.phone.serial, *deployed.fob_serials}
    assert tokens == sorted(tokens, key=lambda t: (t["created_at"], t["serial"]))
    assert listing["next_page_token"] == ""
    [phone] = [t for t in tokens if t["kind"] == "mobile"]
    assert phone["codice_fiscale"] == CF and phone["kind"] == "mobile"
    assert phone["state"] == "active" and phone["params"]["mode"] == "hotp"
    assert phone["activated_at"] > 0
    assert not keys_of(listing) & SECRET_KEYS

    mine = as_json(run("admin", "token", "list", "--cf", CF, "--json"))["tokens"]
    assert [t["serial"] for t in mine] == [deployed.phone.serial]
    fobs = as_json(run("admin", "token", "list", "--kind", "physical", "--json"))["tokens"]
    assert [t["serial"] for t in fobs] == deployed.fob_serials
    assert {t["state"] for t in fobs} == {"suspended"}
    none = run("admin", "token", "list", "--state", "revoked")
    assert none.code == 0 and "No token matches" in none.out

    first = as_json(run("admin", "token", "list", "--page-size", "2", "--json"))
    assert len(first["tokens"]) == 2 and first["next_page_token"]
    second = as_json(
        run("admin", "token", "list", "--page-size", "2", "--page-token",
            first["next_page_token"], "--json")
    )  # fmt: skip
    assert second["next_page_token"] == ""
    assert first["tokens"] + second["tokens"] == tokens
    walked = as_json(run("admin", "token", "list", "--page-size", "1", "--all", "--json"))
    assert walked["tokens"] == tokens
    other_filters = run(
        "admin", "token", "list", "--cf", CF, "--page-token", first["next_page_token"]
    )
    assert other_filters.code == 2 and "page_token" in other_filters.err

    table = run("admin", "token", "list", "--page-size", "2")
    assert table.code == 0 and tokens[0]["serial"] in table.out
    assert f"--page-token {first['next_page_token']}" in " ".join(table.out.split())
    text = run("admin", "token", "show", deployed.phone.serial)
    assert text.code == 0 and "State:" in text.out and "active" in text.out

    inventory = as_json(run("admin", "fob", "list", "--unassigned", "--json"))
    assert [f["serial"] for f in inventory["fobs"]] == deployed.fob_serials
    assert all(f["codice_fiscale"] == "" for f in inventory["fobs"])
    assert as_json(run("admin", "fob", "list", "--state", "active", "--json"))["fobs"] == []

    shown = as_json(run("admin", "token", "show", deployed.phone.serial, "--json"))["token"]
    assert shown == phone
    missing = run("admin", "token", "show", "MOB-0000000000")
    assert missing.code == 4 and "no token with that serial" in missing.err


def test_lifecycle_commands_change_the_token_and_the_verifier_sees_it(
    deployed: Deployed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = lambda *argv, role="admin": cli(capsys, monkeypatch, deployed, *argv, role=role)  # noqa: E731
    serial, phone = deployed.phone.serial, deployed.phone

    def verify(code: str) -> tuple[int, dict[str, Any]]:
        done = run("verify", "--serial", serial, "--code", code, "--json", role="verifier")
        return done.code, json.loads(done.out)

    assert verify("000000" if phone.counter_code(1) != "000000" else "111111") == (
        1,
        {"ok": False, "result": "wrong_code", "serial": serial, "retry_after_seconds": 0},
    )
    failed = as_json(run("admin", "token", "show", serial, "--json"))["token"]
    assert failed["failures"] == 1
    unlocked = as_json(run("admin", "token", "unlock", serial, "--reason", "called", "--json"))
    assert unlocked["token"]["failures"] == 0 and unlocked["token"]["state"] == "active"

    suspended = as_json(run("admin", "token", "suspend", serial, "--json"))["token"]
    assert suspended["state"] == "suspended"
    assert verify(phone.counter_code(1))[1]["result"] == "not_active"
    again = run("admin", "token", "suspend", serial)
    assert again.code == 4 and "cannot suspend a token that is suspended" in again.err
    resumed = run("admin", "token", "resume", serial)
    assert resumed.code == 0 and f"Token {serial} resumed: now active" in resumed.out
    assert verify(phone.counter_code(1)) == (
        0,
        {"ok": True, "result": "ok", "serial": serial, "retry_after_seconds": 0},
    )

    with pytest.raises(SystemExit) as no_reason:
        run("admin", "token", "revoke", serial, "--yes")
    assert no_reason.value.code == 2
    assert "required: --reason" in capsys.readouterr().err
    blank = run("admin", "grid", "revoke", deployed.grid_serial, "--reason", " ", "--yes")
    assert blank.code == 2 and "--reason is required" in blank.err
    unconfirmed = run("admin", "token", "revoke", serial, "--reason", "lost phone")
    assert unconfirmed.code == 2 and "--yes" in unconfirmed.err
    assert as_json(run("admin", "token", "show", serial, "--json"))["token"]["state"] == "active"
    revoked = run("admin", "token", "revoke", serial, "--reason", "lost phone", "--yes", "--json")
    assert as_json(revoked)["token"]["state"] == "revoked"
    assert verify(phone.counter_code(2))[1]["result"] == "revoked"

    card = as_json(
        run("admin", "grid", "revoke", deployed.grid_serial, "--reason", "stolen", "--yes",
            "--json")
    )["grid_card"]  # fmt: skip
    assert card["serial"] == deployed.grid_serial and card["state"] == "revoked"
    assert card["codice_fiscale"] == CF and card["revoked_at"] > 0
    answer = run("grid", "challenge", "--cf", CF, role="verifier")
    assert answer.code == 4 and "no active Security Card" in answer.err

    entries = audit_export(run)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    actions = [(e["action"], e["subject"], e["details"].get("reason")) for e in entries]
    assert ("token_revoked", serial, "lost phone") in actions
    assert ("grid_card_revoked", deployed.grid_serial, "stolen") in actions
    assert ("token_unlocked", serial, "called") in actions
    assert ("token_suspended", serial, None) in actions
    admin_entry = next(e for e in entries if e["action"] == "token_revoked")
    assert "admin" in admin_entry["actor"] and len(bytes.fromhex(admin_entry["entry_hash"])) == 32


def audit_export(run: Any, *options: str) -> list[dict[str, Any]]:
    done = run("admin", "audit", "export", *options)
    assert done.code == 0, done.err
    return [json.loads(line) for line in done.out.splitlines()]


def test_audit_export_streams_every_entry_from_a_seq_or_a_date(
    deployed: Deployed,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    run = lambda *argv: cli(capsys, monkeypatch, deployed, *argv)  # noqa: E731
    for fob in deployed.fob_serials:  # more entries
        assert run("admin", "token", "unlock", fob, "--json").code == 0
    entries = audit_export(run)
    count = len(entries)
    assert count >= 5 and [e["seq"] for e in entries] == list(range(1, count + 1))
    assert all(e["prev_hash"] == p["entry_hash"] for p, e in itertools.pairwise(entries))
    unlocked = [e["subject"] for e in entries if e["action"] == "token_unlocked"]
    assert unlocked == deployed.fob_serials

    assert audit_export(run, "--page-size", "2") == entries  # page after page
    assert [e["seq"] for e in audit_export(run, "--since", "3")] == list(range(3, count + 1))
    assert audit_export(run, "--since", "3", "--page-size", "3") == entries[2:]
    today = dt.datetime.fromtimestamp(entries[0]["at"], dt.UTC).date().isoformat()
    assert audit_export(run, "--since", today) == entries
    assert audit_export(run, "--since", "2999-01-01") == []
    later = dt.datetime.fromtimestamp(entries[-1]["at"] + 1, dt.UTC).isoformat()
    assert audit_export(run, "--since", later) == []

    out = tmp_path / "audit.jsonl"
    written = run("admin", "audit", "export", "--output", out)
    assert written.code == 0 and f"{count} audit entries written" in written.err
    assert [json.loads(line) for line in out.read_text().splitlines()] == entries
    with pytest.raises(SystemExit) as bad:
        run("admin", "audit", "export", "--since", "yesterday")
    assert bad.value.code == 2
    assert "--since: a sequence number or an ISO date" in capsys.readouterr().err


def test_relying_party_commands_log_in_by_login_code_and_security_card(
    deployed: Deployed,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def run(*argv: object, stdin: tuple[str, ...] = ()) -> Run:
        return run_cli(capsys, monkeypatch, [*argv, *deployed.args("verifier")], stdin)

    sent = run("login-code", "request", "--cf", CF, "--json")
    assert sent.code == 0, sent.err
    assert json.loads(sent.out)["device_serial"] == ""
    [sms] = read_sms_messages(tmp_path / "sms-outbox.jsonl", citizen(CF).phone_number)
    code = re.search(r"\b(\d{6})\b", sms.text)
    assert code is not None
    checked = run("login-code", "verify", "--cf", CF, "--code", "-", "--pin-from-stdin",
                  "--json", stdin=(code.group(1),))  # fmt: skip
    assert checked.code == 0 and json.loads(checked.out)["result"] == "ok"
    assert code.group(1) not in checked.out + checked.err
    replayed = run("login-code", "verify", "--cf", CF, "--code", code.group(1))
    assert replayed.code == 1 and "REPLAYED" in replayed.out

    asked = json.loads(run("grid", "challenge", "--cf", CF, "--json").out)
    assert asked["serial"] == deployed.grid_serial
    first, second = (deployed.grid_values[asked[cell]] for cell in ("first_cell", "second_cell"))
    answered = run("grid", "answer", "--cf", CF, "--first", first, "--second", second, "--json")
    assert answered.code == 0 and json.loads(answered.out)["result"] == "ok"
    asked = json.loads(run("grid", "challenge", "--cf", CF, "--json").out)
    wrong = str((int(deployed.grid_values[asked["first_cell"]]) + 1) % 1000).zfill(len(first))
    refused = run("grid", "answer", "--cf", CF, "--first", wrong, "--second", second, "--json")
    assert refused.code == 1 and json.loads(refused.out)["result"] == "wrong_code"


ADMIN_COMMANDS = [
    ("admin", "token", "list"),
    ("admin", "token", "show", "{phone}"),
    ("admin", "token", "suspend", "{phone}"),
    ("admin", "token", "resume", "{phone}"),
    ("admin", "token", "unlock", "{phone}"),
    ("admin", "token", "revoke", "{phone}", "--reason", "test", "--yes"),
    ("admin", "grid", "revoke", "{grid}", "--reason", "test", "--yes"),
    ("admin", "fob", "list"),
    ("admin", "audit", "export"),
]


def test_every_admin_command_is_refused_to_a_certificate_without_the_admin_role(
    deployed: Deployed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = cli(capsys, monkeypatch, deployed, "admin", "audit", "export").out
    for command in ADMIN_COMMANDS:
        argv = [
            part.format(phone=deployed.phone.serial, grid=deployed.grid_serial) for part in command
        ]
        for flags in ([], ["--json"]):
            refused = cli(capsys, monkeypatch, deployed, *argv, *flags, role="verifier")
            assert refused.code == 4, (argv, refused.err)
            assert refused.out == ""
            [line] = refused.err.strip().splitlines()
            assert line.startswith("otphsm: error: the service refused:"), line
            assert line.endswith(
                "not allowed for this caller's roles (verifier): this command needs a client "
                "certificate with the admin role"
            ), line
    assert cli(capsys, monkeypatch, deployed, "admin", "audit", "export").out == before
    phone = as_json(
        cli(capsys, monkeypatch, deployed, "admin", "token", "show", deployed.phone.serial,
            "--json")
    )  # fmt: skip
    assert phone["token"]["state"] == "active"
