"""Errors name the field that was wrong, never the value sent, and never carry a library's
text: for malformed and unknown input to every RPC (built from the proto descriptors, so a new
RPC is covered), for a certificate that does not parse, a card of someone else, and a request
that does not decode. The library's text goes to the server log instead."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from support.card_fixtures import LAURA_BIANCHI
from support.server_models import each_server_model, on_each_server_model  # noqa: F401
from support.service_devices import card_signature
from support.service_fixtures import ServiceUnderTest

import otphsm.service.server  # noqa: F401  (imports every service's generated code)
from otphsm.service.rpcs import RPCS
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.v1 import enrolment_pb2

pytestmark = pytest.mark.softhsm

LIBRARY_TEXT = (
    "ParseError",
    "asn1",
    "Traceback",
    "psycopg",
    "sqlite3",
    "pkcs11",
    "CKR_",
    "DecodeError",
    "Error parsing",
    "ValueError",
    "KeyError",
    "Exception",
    "xml.etree",
    "cryptography",
)
UNKNOWN_CF = "BNCGNN75C12F205J"  # well-formed, never enrolled
BAD_CHECK_CF = "RSSMRA80A01L378X"  # the check character is wrong
MARKER = "ZQXJ-9417"  # the shape of a serial, known to nobody
GARBAGE_DER = b"\x30\x03\x02\x01\x01"


def method_descriptor(path: str) -> MethodDescriptor:
    from google.protobuf import descriptor_pool

    service, method = path.strip("/").split("/")
    found: MethodDescriptor = (
        descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    )
    return found


def filled(message: Descriptor, codice_fiscale: str) -> Message:
    """A request with every string field set to `MARKER` (a codice fiscale field to
    `codice_fiscale`) and every bytes field to a DER fragment."""
    request: Message = message_factory.GetMessageClass(message)()
    for field in message.fields:
        if field.is_repeated:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            setattr(request, field.name, codice_fiscale if "fiscale" in field.name else MARKER)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            setattr(request, field.name, GARBAGE_DER)
    return request


def sent_texts(request: Message) -> set[str]:
    texts: set[str] = set()
    for field, value in request.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING and len(value) >= 4:
            texts.add(value)
        elif isinstance(value, Message):
            texts |= sent_texts(value)
    return texts


def problems_in(details: str, sent: set[str]) -> list[str]:
    found = [f"echoes {text!r}" for text in sent if text.lower() in details.lower()]
    found += [f"library text {word!r}" for word in LIBRARY_TEXT if word in details]
    return found


def call(service: ServiceUnderTest, path: str, request: Message) -> tuple[grpc.StatusCode, str]:
    role = min(RPCS[path].roles).value
    channel = service.channel(role)
    method = method_descriptor(path)
    try:
        if method.server_streaming:
            for _ in channel.unary_stream(path)(request.SerializeToString(), timeout=1):
                pass
        else:
            channel.unary_unary(path)(request.SerializeToString(), timeout=30)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def requests() -> Iterator[tuple[str, Message]]:
    for path in sorted(RPCS):
        descriptor = method_descriptor(path).input_type
        for codice_fiscale in (UNKNOWN_CF, BAD_CHECK_CF):
            yield path, filled(descriptor, codice_fiscale)


def test_no_error_echoes_the_input_or_a_librarys_text(service: ServiceUnderTest) -> None:
    problems: list[str] = []
    refused = 0
    for path, request in requests():
        code, details = call(service, path, request)
        if code is not grpc.StatusCode.OK:
            refused += 1
        problems += [
            f"{path} {code.name} {details!r}: {p}"
            for p in problems_in(details, sent_texts(request))
        ]
    assert refused > len(RPCS)
    assert not problems, "\n".join(problems)


def test_a_request_that_does_not_decode_is_refused_in_our_words(service: ServiceUnderTest) -> None:
    channel = service.channel("verifier")
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary("/otphsm.v1.ValidationService/Verify")(b"\xff\xff\xff", timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert "does not decode" in details and not problems_in(details, set()), details


def test_card_refusals_name_the_field_not_the_value(
    service: ServiceUnderTest, cns_card_1024: CnsCard, captured_logs: io.StringIO
) -> None:
    station = service.enrolment()

    def authorise(**changes: object) -> str:
        challenge = station.GetChallenge(enrolment_pb2.GetChallengeRequest())
        fields = {**card_signature(cns_card_1024, challenge.nonce), **changes}
        with pytest.raises(grpc.RpcError) as refused:
            station.AuthoriseWithCard(
                enrolment_pb2.AuthoriseWithCardRequest(
                    challenge_id=challenge.challenge_id, **fields
                )
            )
        details: str = refused.value.details() or ""
        return details

    garbage = authorise(certificate_der=GARBAGE_DER)
    assert "certificate" in garbage and not problems_in(garbage, set()), garbage
    someone_else = authorise(codice_fiscale=LAURA_BIANCHI.codice_fiscale)
    assert "codice fiscale" in someone_else
    assert not problems_in(someone_else, {LAURA_BIANCHI.codice_fiscale}), someone_else
    other_card = authorise(card_id="9999999999999999")
    assert "card" in other_card and not problems_in(other_card, {"9999999999999999"}), other_card

    # the library's words are in the server log, beside the call's outcome, apart from the
    # request's fields
    records = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    calls = [r for r in records if r.get("msg") == "rpc" and r.get("error") == "CardCheckFailed"]
    malformed = next(r for r in calls if "X.509" in r["detail"])
    assert malformed["code"] == "FAILED_PRECONDITION"
    assert "ParseError" in malformed["cause"] or "asn1" in malformed["cause"], malformed
    mismatch = next(r for r in calls if "another codice fiscale" in r["detail"])
    assert mismatch["request"] == {"codice_fiscale": LAURA_BIANCHI.codice_fiscale}, mismatch
    assert "codice_fiscale" not in mismatch
