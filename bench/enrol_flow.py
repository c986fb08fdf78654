"""One full card-authorised enrolment and secure activation, as a counter does it: the station
reads the citizen's CNS card through a real pcscd (vpcd + the simulated card), the citizen's
PIN is verified, the card signs the server's challenge; the server checks it and issues a
token; the token app activates it by ECDH and proves possession with its first code.

Station time is what the card and PC/SC take; server time is the sum of the RPC round trips.
"""

from __future__ import annotations

import datetime as dt
import hmac
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otphsm.core.otp import totp
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import Person, issue_card
from otphsm.simulators.deployment import insert_card, start_pcscd
from otphsm.smartcard.cns import CnsClient
from otphsm.smartcard.pcsc import PcscConnection
from otphsm.v1 import (
    common_pb2,
    device_pb2,
    device_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
)

PIN = "12345678"
PUK = "87654321"
CITIZEN = Person(
    given_name="Mario",
    surname="Rossi",
    birth_date=dt.date(1980, 1, 1),
    sex="M",
    codice_fiscale="RSSMRA80A01L378S",
    birth_municipality="L378",
)


def _channel(target: str, tls: tuple[str, str, str]) -> grpc.Channel:
    ca, cert, key = (Path(p).read_bytes() for p in tls)
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(ca, key, cert))


def _enrol_once(reader: str, station: Any, device: Any, timings: dict[str, list[float]]) -> None:
    clock = time.perf_counter
    t0 = clock()
    challenge = station.GetChallenge(enrolment_pb2.GetChallengeRequest())
    t1 = clock()
    with PcscConnection(reader, timeout=10.0) as transport:
        client = CnsClient(transport)
        contents = client.read_card()
        client.verify_pin(PIN)
        signature = client.sign_challenge(challenge.nonce)
    t2 = clock()
    authorised = station.AuthoriseWithCard(
        enrolment_pb2.AuthoriseWithCardRequest(
            challenge_id=challenge.challenge_id,
            certificate_der=contents.certificate,
            card_id=contents.card_id,
            codice_fiscale=contents.personal_data.codice_fiscale,
            signature=signature,
        )
    )
    issued = station.IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorised.authorisation_id,
            method=enrolment_pb2.ACTIVATION_METHOD_CODE,
        )
    )
    t3 = clock()
    phone = ec.generate_private_key(ec.SECP256R1())
    point = phone.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    t4 = clock()
    activated = device.ActivateWithCode(
        device_pb2.ActivateWithCodeRequest(
            activation_code=issued.activation_code, device_public_key=point
        )
    )
    server_key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), activated.server_public_key
    )
    seed = phone.exchange(ec.ECDH(), server_key)
    code = totp(lambda m: hmac.new(seed, m, "sha1").digest(), time.time(), period=30, digits=6)
    t5 = clock()
    proved = device.ProvePossession(
        device_pb2.ProvePossessionRequest(serial=activated.serial, code=code)
    )
    t6 = clock()
    if proved.result != common_pb2.VERIFY_RESULT_OK:
        raise RuntimeError(f"proof of possession refused: {proved.result}")
    timings["station_card_ms"].append((t2 - t1) * 1000)
    timings["server_rpcs_ms"].append(((t1 - t0) + (t3 - t2) + (t5 - t4) + (t6 - t5)) * 1000)
    timings["device_ms"].append((t4 - t3) * 1000)
    timings["total_ms"].append((t6 - t0) * 1000)


def measure_enrolment(env: Any, server_target: str, rounds: int) -> dict[str, float]:
    """Medians over `rounds` enrolments of the same citizen (each replaces the last token)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    card = CnsCard(issue_card(env.card_ca, CITIZEN, PIN, PUK, key_size=2048, now=now))
    station = enrolment_pb2_grpc.EnrolmentServiceStub(
        _channel(server_target, env.client_tls("enroller"))
    )
    device = device_pb2_grpc.DeviceServiceStub(_channel(server_target, env.client_tls("device")))
    timings: dict[str, list[float]] = {
        "station_card_ms": [],
        "server_rpcs_ms": [],
        "device_ms": [],
        "total_ms": [],
    }
    with start_pcscd(env.root / "pcscd") as pcscd:  # before this process's first PC/SC call
        inserted = insert_card(pcscd, card, timeout=10)
        try:
            for _ in range(rounds):
                _enrol_once(inserted.reader, station, device, timings)
        finally:
            inserted.link.remove()
    result = {name: statistics.median(values) for name, values in timings.items()}
    result["rounds"] = rounds
    return result
