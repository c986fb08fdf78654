"""Issuing simulated cards, the card file, and `otphsm sim card issue`."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from support.card_fixtures import (
    CARD_ID_1024,
    CARD_NOW,
    CARD_PIN,
    CARD_PUK,
    LAURA_BIANCHI,
    MARIO_ROSSI,
    counter_bytes,
)

from otphsm.cli.main import main
from otphsm.core import codice_fiscale
from otphsm.core.cns_identity import parse_common_name, personal_data_digest
from otphsm.simulators.card.cardfile import (
    CardFileError,
    card_spec_to_json,
    load_card,
    read_card_spec,
    save_card,
)
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import (
    ATR_CNS_1_0,
    ATR_CNS_1_1,
    Person,
    issue_card,
    random_card_id,
)
from otphsm.simulators.card.pki import TestCa
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.cns_files import (
    EF_C_CARTA,
    EF_DATI_PERSONALI,
    EF_DATI_PROCESSORE,
    EF_ID_CARTA,
    EF_KEY_PUB,
    cns_rsa_bits,
    is_cns_atr,
    pad_pin,
    parse_dati_personali,
    pin_reference_for_atr,
)


def cert_of(spec: CardSpec) -> x509.Certificate:
    return x509.load_der_x509_certificate(spec.files[EF_C_CARTA])


def test_the_1024_card_is_a_cns_1_0(card_spec_1024: CardSpec, card_ca: TestCa) -> None:
    spec = card_spec_1024
    assert spec.atr == ATR_CNS_1_0
    assert (spec.key_size, cns_rsa_bits(spec.atr), pin_reference_for_atr(spec.atr)) == (
        1024,
        1024,
        0x10,
    )
    assert is_cns_atr(spec.atr)
    assert spec.files[EF_ID_CARTA] == CARD_ID_1024.encode()
    assert (spec.pin, spec.puk, spec.label) == (CARD_PIN, CARD_PUK, "MARIO ROSSI")
    assert spec.extra["card_id"] == CARD_ID_1024
    assert spec.extra["codice_fiscale"] == "RSSMRA80A01L378S"


def test_the_2048_card_is_a_cns_1_1(card_spec_2048: CardSpec) -> None:
    spec = card_spec_2048
    assert spec.atr == ATR_CNS_1_1
    assert (spec.key_size, cns_rsa_bits(spec.atr), pin_reference_for_atr(spec.atr)) == (
        2048,
        2048,
        0x90,
    )
    assert is_cns_atr(spec.atr)


def test_personal_data_describe_the_holder(card_spec_2048: CardSpec) -> None:
    raw = card_spec_2048.files[EF_DATI_PERSONALI]
    assert len(raw) == 400
    pd = parse_dati_personali(raw)
    assert (pd.given_name, pd.surname, pd.sex) == ("LAURA", "BIANCHI", "F")
    assert (pd.birth_date, pd.codice_fiscale) == ("15071990", "BNCLRA90L55L378U")
    assert (pd.birth_municipality, pd.residence_municipality) == ("L378", "H612")
    expiry = cert_of(card_spec_2048).not_valid_after_utc.strftime("%d%m%Y")
    assert (pd.issue_date, pd.expiry_date) == ("02032026", expiry)
    assert raw.startswith(b"%06X" % (len(raw.rstrip(b"\x00")) - 6))


def test_certificate_binds_key_card_and_holder(card_spec: CardSpec, card_ca: TestCa) -> None:
    certificate = cert_of(card_spec)
    assert certificate.issuer == card_ca.certificate.subject
    assert certificate.public_key() == card_spec.private_key.public_key()
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(common_name, str)
    cn = parse_common_name(common_name)
    assert cn.codice_fiscale == card_spec.extra["codice_fiscale"]
    assert cn.card_id.encode() == card_spec.files[EF_ID_CARTA]
    assert cn.personal_data_digest == personal_data_digest(card_spec.files[EF_DATI_PERSONALI])
    assert certificate.not_valid_before_utc == CARD_NOW
    assert f"{certificate.serial_number:X}" == card_spec.extra["certificate_serial"]


def test_key_file_holds_the_pkcs1_rsa_public_key(card_spec: CardSpec) -> None:
    der = card_spec.files[EF_KEY_PUB]
    public = card_spec.private_key.public_key()
    assert der == public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert serialization.load_der_public_key(der) == public


def test_issue_with_given_key_and_deterministic_randomness(card_ca: TestCa) -> None:
    key = rsa.generate_private_key(65537, 1024)
    spec = issue_card(
        card_ca,
        MARIO_ROSSI,
        "24680",
        "13579135",
        key_size=1024,
        now=CARD_NOW,
        private_key=key,
        random_bytes=counter_bytes(),
    )
    assert spec.private_key is key
    assert spec.files[EF_ID_CARTA] == random_card_id(counter_bytes()).encode()
    assert spec.files[EF_DATI_PROCESSORE] == bytes(range(8, 24))


def test_random_card_ids_are_16_digits() -> None:
    assert random_card_id(lambda n: b"\xff" * n) == f"{(2**64 - 1) % 10**16:016d}"
    assert random_card_id(bytes) == "0" * 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key_size": 4096}, "key size"),
        ({"key_size": 2048, "private_key": "1024"}, "1024 bits"),
        ({"pin": "1234"}, "PIN"),
        ({"puk": "abcdefgh"}, "PUK"),
        ({"card_id": "12345"}, "card id"),
    ],
)
def test_issue_refuses_bad_requests(
    card_ca: TestCa, card_spec_1024: CardSpec, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"pin": CARD_PIN, "puk": CARD_PUK, "key_size": 1024}
    arguments.update(kwargs)
    if arguments.get("private_key") == "1024":
        arguments["private_key"] = card_spec_1024.private_key
    with pytest.raises(ValueError, match=message):
        issue_card(card_ca, MARIO_ROSSI, now=CARD_NOW, **arguments)  # type: ignore[arg-type]


def test_person_sex_is_m_or_f() -> None:
    with pytest.raises(ValueError):
        Person("A", "B", dt.date(2000, 1, 1), "X", "RSSMRA80A01L378S")


# --- card file -----------------------------------------------------------------------------------


def test_card_file_round_trip(card_spec_2048: CardSpec, card_file_2048: Path) -> None:
    assert stat.S_IMODE(card_file_2048.stat().st_mode) == 0o600
    loaded = read_card_spec(card_file_2048)
    assert card_spec_to_json(loaded) == card_spec_to_json(card_spec_2048)
    assert loaded.private_key.private_numbers() == card_spec_2048.private_key.private_numbers()
    assert dict(loaded.files) == dict(card_spec_2048.files)


def test_a_loaded_card_works(card_file_1024: Path) -> None:
    card = load_card(card_file_1024)
    card.power_on()
    assert card.process(bytes.fromhex("0020001008") + pad_pin(CARD_PIN)) == b"\x90\x00"


def test_counters_survive_the_card_file(card_spec_1024: CardSpec, tmp_path: Path) -> None:
    card = CnsCard(card_spec_1024)
    card.power_on()
    for _ in range(3):
        card.process(bytes.fromhex("0020001008") + pad_pin("99999"))
    path = tmp_path / "blocked.json"
    save_card(path, card.export_spec())
    again = load_card(path)
    again.power_on()
    assert again.process(bytes.fromhex("0020001008") + pad_pin(CARD_PIN)) == b"\x69\x83"


def test_missing_tries_default_to_full(card_spec_1024: CardSpec, tmp_path: Path) -> None:
    document = card_spec_to_json(card_spec_1024)
    del document["pin_tries_left"], document["puk_tries_left"]
    path = tmp_path / "card.json"
    path.write_text(json.dumps(document))
    spec = read_card_spec(path)
    assert (spec.pin_tries_left, spec.puk_tries_left) == (3, 10)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "not json {",
        lambda d: json.dumps([1, 2]),
        lambda d: json.dumps({**d, "format": "other"}),
        lambda d: json.dumps({**d, "version": 2}),
        lambda d: json.dumps({k: v for k, v in d.items() if k != "atr"}),
        lambda d: json.dumps({**d, "atr": "3BZZ"}),
        lambda d: json.dumps({**d, "files": {"3F00XX": "00"}}),
        lambda d: json.dumps({**d, "files": {"3F0011": "00"}}),
        lambda d: json.dumps({**d, "pin": "12"}),
        lambda d: json.dumps({**d, "pin_tries_left": 7}),
        lambda d: json.dumps({**d, "private_key_pem": "garbage"}),
        lambda d: json.dumps({**d, "files": []}),
    ],
)
def test_damaged_card_files_are_refused(
    card_spec_1024: CardSpec, tmp_path: Path, damage: object
) -> None:
    path = tmp_path / "card.json"
    path.write_text(damage(card_spec_to_json(card_spec_1024)))  # type: ignore[operator]
    with pytest.raises(CardFileError):
        load_card(path)


def test_missing_card_file(tmp_path: Path) -> None:
    with pytest.raises(CardFileError, match="cannot read"):
        load_card(tmp_path / "absent.json")


# --- CLI -----------------------------------------------------------------------------------------


def issue_args(out: Path, ca_dir: Path, *extra: str) -> list[str]:
    return [
        "sim",
        "card",
        "issue",
        "--out",
        str(out),
        "--ca-dir",
        str(ca_dir),
        "--given-name",
        "Laura",
        "--surname",
        "Bianchi",
        "--birth-date",
        "1990-07-15",
        "--sex",
        "F",
        "--pin",
        "24680",
        "--puk",
        "13579135",
        *extra,
    ]


def test_cli_issues_cards_under_one_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca_dir = tmp_path / "ca"
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert main(issue_args(first, ca_dir, "--key-size", "1024", "--card-id", "1" * 16)) == 0
    output = capsys.readouterr().out
    assert "created test CA" in output
    assert "1111111111111111" in output
    assert main(issue_args(second, ca_dir, "--codice-fiscale", "BNCLRA90L55L378U")) == 0
    assert "created test CA" not in capsys.readouterr().out

    ca = TestCa.load(ca_dir)
    one, two = read_card_spec(first), read_card_spec(second)
    assert (one.key_size, two.key_size) == (1024, 2048)
    assert cert_of(one).issuer == cert_of(two).issuer == ca.certificate.subject
    computed = codice_fiscale.compute(
        "Bianchi", "Laura", dt.date(1990, 7, 15), codice_fiscale.Sex.FEMALE, "L378"
    )
    assert one.extra["codice_fiscale"] == computed == LAURA_BIANCHI.codice_fiscale
    assert one.files[EF_ID_CARTA] == b"1" * 16
    assert (one.pin, one.puk) == ("24680", "13579135")


def test_cli_refuses_to_overwrite_and_bad_pins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, ca_dir = tmp_path / "card.json", tmp_path / "ca"
    out.write_text("keep me")
    assert main(issue_args(out, ca_dir)) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(issue_args(tmp_path / "other.json", ca_dir, "--pin", "12")) == 2
    assert "PIN" in capsys.readouterr().err
    assert not ca_dir.exists()


def test_cli_puts_a_crl_distribution_point_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_dir, url = tmp_path / "ca", "http://127.0.0.1:8080/cns.crl"
    with_cdp, without = tmp_path / "with.json", tmp_path / "without.json"
    assert main(issue_args(with_cdp, ca_dir, "--key-size", "1024", "--crl-url", url)) == 0
    assert main(issue_args(without, ca_dir, "--key-size", "1024")) == 0
    points = cert_of(read_card_spec(with_cdp)).extensions.get_extension_for_class(
        x509.CRLDistributionPoints
    )
    assert [name.value for point in points.value for name in point.full_name or ()] == [url]
    with pytest.raises(x509.ExtensionNotFound):
        cert_of(read_card_spec(without)).extensions.get_extension_for_class(
            x509.CRLDistributionPoints
        )
    capsys.readouterr()
    assert main(issue_args(tmp_path / "x.json", ca_dir, "--crl-url", "ldap://ca/x")) == 2
    assert "--crl-url" in capsys.readouterr().err
