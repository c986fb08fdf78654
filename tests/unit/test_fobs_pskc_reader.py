"""The PSKC reader on its own (no HSM, no store): what it accepts, and why it refuses a file."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
import re
from typing import Any

import pytest
from pskc import PSKC

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.pskc import PskcProblem, PskcRefused, read_pskc
from otphsm.simulators.token.keyfob import KeyFob
from otphsm.simulators.token.pskc_factory import BatchSpec, make_fobs, pskc_document

PSK = bytes(range(16))
HOTP_URN = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
NOW = dt.datetime(2026, 3, 3, tzinfo=dt.UTC).timestamp()


def vendor_file(
    *,
    encryption: str | None = "aes128-cbc",
    psk: bytes = PSK,
    mac: bool = True,
    **key: Any,
) -> bytes:
    """A PSKC file written by python-pskc directly, for what our factory never writes."""
    container = PSKC()
    attributes: dict[str, Any] = {
        "serial": "FOB-00000001",
        "secret": os.urandom(20),
        "algorithm": HOTP_URN,
        "response_length": 6,
        "counter": 0,
    }
    attributes.update(key)
    container.add_key(**{k: v for k, v in attributes.items() if v is not None})
    if encryption is not None:
        container.encryption.setup_preshared_key(key=psk, algorithm=encryption)
        if not mac:
            container.mac.algorithm = None
    out = io.BytesIO()
    container.write(out)
    return out.getvalue()


def refusal(data: bytes, **keys: Any) -> PskcRefused:
    with pytest.raises(PskcRefused) as refused:
        read_pskc(data, now=NOW, **(keys or {"psk": PSK}))
    return refused.value


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        (OtpParameters(OtpMode.HOTP), {"psk": bytes(range(24))}),
        (OtpParameters(OtpMode.HOTP, HashAlgorithm.SHA256, 8), {"psk": bytes(range(32))}),
        (OtpParameters(OtpMode.TOTP, HashAlgorithm.SHA512, 6, 60), {"password": "pw"}),
    ],
)
def test_factory_files_read_back(params: OtpParameters, keys: dict[str, Any]) -> None:
    fobs = make_fobs(BatchSpec(2, 99, params, start_counter=7))
    packages = read_pskc(pskc_document(fobs, pbkdf2_iterations=1000, **keys), now=NOW, **keys)
    assert [(p.serial, p.params, bytes(p.secret)) for p in packages] == [
        (f.serial, params, f.secret) for f in fobs
    ]
    assert {p.counter for p in packages} == {7 if params.mode is OtpMode.HOTP else 0}


def test_key_wrap_files_need_no_mac_and_tell_a_wrong_key() -> None:
    data = vendor_file(encryption="kw-aes128")
    (package,) = read_pskc(data, psk=PSK, now=NOW)
    assert package.params == OtpParameters(OtpMode.HOTP)
    assert refusal(data, psk=bytes(16)).problem is PskcProblem.WRONG_KEY


def test_vendor_spellings_of_totp_and_the_suite() -> None:
    data = vendor_file(
        algorithm="urn:ietf:params:xml:ns:keyprov:pskc#totp",
        algorithm_suite="hmac-sha-256",
        secret=os.urandom(32),
        counter=None,
        time_interval=60,
        response_length=8,
    )
    (package,) = read_pskc(data, psk=PSK, now=NOW)
    assert package.params == OtpParameters(OtpMode.TOTP, HashAlgorithm.SHA256, 8, 60)


@pytest.mark.parametrize(
    ("data", "problem", "says"),
    [
        (vendor_file(encryption=None), PskcProblem.PROTECTION, "every secret must be encrypted"),
        (vendor_file(mac=False), PskcProblem.PROTECTION, "has no MAC"),
        (
            vendor_file().replace(b"aes128-cbc", b"tripledes-cbc"),
            PskcProblem.UNSUPPORTED,
            "tripledes-cbc is not accepted",
        ),
        (
            vendor_file(algorithm="urn:ietf:params:xml:ns:keyprov:pskc:pin"),
            PskcProblem.UNSUPPORTED,
            "key algorithm",
        ),
        (vendor_file(algorithm_suite="HMAC-MD5"), PskcProblem.UNSUPPORTED, "suite"),
        (vendor_file(secret=os.urandom(10)), PskcProblem.BAD_SECRET, "got 10"),
        (vendor_file(serial=None), PskcProblem.MISSING_SERIAL, "SerialNo"),
        (vendor_file(serial="fob 1"), PskcProblem.BAD_SERIAL, "serial"),
        (vendor_file(response_length=None), PskcProblem.BAD_PARAMETERS, "ResponseFormat"),
        (vendor_file(response_length=10), PskcProblem.BAD_PARAMETERS, "digits"),
        (vendor_file(response_encoding="HEXADECIMAL"), PskcProblem.UNSUPPORTED, "decimal"),
        (
            vendor_file(algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp", time_offset=4),
            PskcProblem.UNSUPPORTED,
            "time origin",
        ),
        (
            vendor_file(policy__expiry_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
            PskcProblem.BAD_PARAMETERS,
            "expired on 2025-01-01",
        ),
        (vendor_file(policy__key_usage=["CR"]), PskcProblem.UNSUPPORTED, "does not allow OTP"),
        (b"", PskcProblem.MALFORMED, "not well-formed"),
        (b"<KeyContainer Version='1.0'/>", PskcProblem.MALFORMED, "not a PSKC KeyContainer"),
        (
            b'<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc" Version="1.0"/>',
            PskcProblem.EMPTY,
            "no key package",
        ),
        (
            b'<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc" Version="2.0"/>',
            PskcProblem.UNSUPPORTED,
            "version 1.0",
        ),
    ],
)
def test_refusals_say_why(data: bytes, problem: PskcProblem, says: str) -> None:
    refused = refusal(data)
    assert refused.problem is problem
    assert says in str(refused)
    assert isinstance(refused, InvalidInput)


def test_entities_and_dtds_are_refused_before_python_pskc_parses() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc" Version="1.0">&lol2;'
        b"</KeyContainer>"
    )
    assert refusal(bomb).problem is PskcProblem.MALFORMED
    external = vendor_file().replace(
        b"?>", b'?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', 1
    )
    assert refusal(external).problem is PskcProblem.MALFORMED


def test_a_plain_value_beside_the_encrypted_one_is_refused() -> None:
    """python-pskc would prefer the PlainValue: an attacker could swap in a seed of his own."""
    data = vendor_file()
    planted = data.replace(
        b"<pskc:Secret>",
        b"<pskc:Secret><pskc:PlainValue>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</pskc:PlainValue>",
    )
    assert refusal(planted).problem is PskcProblem.PROTECTION


def test_the_kind_and_size_of_key_are_checked() -> None:
    psk_file = pskc_document(make_fobs(BatchSpec(1, 1)), psk=PSK)
    password_file = pskc_document(make_fobs(BatchSpec(1, 1)), password="pw", pbkdf2_iterations=1000)
    assert "password, not a key" in str(refusal(password_file, psk=PSK))
    assert "pre-shared key, not a password" in str(refusal(psk_file, password="pw"))
    short = refusal(psk_file, psk=PSK[:8])
    assert (short.problem, "needs a key of 16 bytes, got 8" in str(short)) == (
        PskcProblem.WRONG_KEY,
        True,
    )
    with pytest.raises(InvalidInput, match="either"):
        read_pskc(psk_file)
    with pytest.raises(InvalidInput, match="either"):
        read_pskc(psk_file, psk=PSK, password="pw")


def test_too_many_pbkdf2_iterations_are_refused_before_deriving() -> None:
    data = pskc_document(make_fobs(BatchSpec(1, 1)), password="pw", pbkdf2_iterations=1000)
    costly = data.replace(b"<IterationCount>1000<", b"<IterationCount>999999999<")
    assert "PBKDF2 iterations" in str(refusal(costly, password="pw"))


def test_a_duplicate_serial_names_the_package_and_never_a_secret() -> None:
    fobs = make_fobs(BatchSpec(3, 1))
    fobs[2] = KeyFob("FOB-00000001", fobs[2].secret, fobs[2].params)  # a duplicate serial
    data = pskc_document(fobs, psk=PSK)
    refused = refusal(data)
    assert (refused.problem, refused.package, refused.serial) == (
        PskcProblem.DUPLICATE_SERIAL,
        3,
        "FOB-00000001",
    )
    for fob in fobs:
        assert fob.secret.hex() not in str(refused)


def test_a_file_that_macs_with_its_encryption_key_still_tells_key_from_tampering() -> None:
    """Older vendors ship no MACKey: the MAC key is the file key. Then a failure on the first
    secret means a wrong key, a failure after a secret opened means an altered file."""
    container = PSKC()
    for n in (1, 2):
        container.add_key(
            serial=f"FOB-0000000{n}", secret=os.urandom(20), algorithm=HOTP_URN, response_length=6
        )
    container.mac.setup(key=PSK, algorithm="hmac-sha1")
    container.encryption.setup_preshared_key(key=PSK, algorithm="aes128-cbc")
    out = io.BytesIO()
    container.write(out)
    data = re.sub(rb"<pskc:MACKey>.*?</pskc:MACKey>", b"", out.getvalue(), flags=re.S)
    assert b"MACKey" not in data
    assert [p.serial for p in read_pskc(data, psk=PSK)] == ["FOB-00000001", "FOB-00000002"]
    assert refusal(data, psk=bytes(16)).problem is PskcProblem.WRONG_KEY
    macs = re.findall(rb"<pskc:ValueMAC>([^<]+)<", data)
    tampered = data.replace(macs[1], base64.b64encode(bytes(20)))
    refused = refusal(tampered)
    assert (refused.problem, refused.package) == (PskcProblem.BAD_MAC, 2)
