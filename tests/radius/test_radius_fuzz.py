"""RADIUS fuzzing against a real `otphsm serve`: a few thousand datagrams from a declared NAS
(random bytes, and a valid Access-Request mutated: bytes flipped, truncated, wrong lengths in
the header and in attributes, attributes overflowing the packet, too many attributes, other
codes), drawn from a seeded random source. None is answered unless it is still a valid
request; the malformed ones are counted in the metric; the server still answers a valid
request afterwards; and its log holds neither the shared secret nor any code sent."""

from __future__ import annotations

import random
import struct
import time
import urllib.request
from collections.abc import Iterator

import pytest
from support.fault_support import CITIZEN
from support.radius_support import SECRET, Nas, StartRadius, access_request, radclient

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(300)]

SEED = 20261206
PACKETS = 3000


def fuzzed(rng: random.Random, valid: bytes) -> Iterator[bytes]:
    """PACKETS datagrams, each one kind of damage, in a seeded order."""
    for _ in range(PACKETS):
        kind = rng.randrange(9)
        data = bytearray(valid)
        if kind == 0:  # noise, of any length (beyond the 4096 octets allowed too)
            yield rng.randbytes(rng.choice([0, 1, 19, 20, 21, 64, 4096, 4097, 5000]))
        elif kind == 1:  # a few bytes flipped anywhere
            for _ in range(rng.randint(1, 5)):
                data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
            yield bytes(data)
        elif kind == 2:  # truncated
            yield bytes(data[: rng.randrange(len(data))])
        elif kind == 3:  # the header's length wrong
            length = rng.choice([0, 1, 19, 20, len(data) - 1, len(data) + 1, 4096, 65535])
            yield bytes(data[:2]) + struct.pack("!H", length) + bytes(data[4:])
        elif kind == 4:  # an attribute whose length runs past the packet, or is 0 or 1
            code = rng.choice([1, 2, 4, 5, 24, 26, 31, 80, 255])
            attribute = bytes([code, rng.choice([0, 1, 255])]) + rng.randbytes(rng.randrange(8))
            yield _with_attributes(data, attribute)
        elif kind == 5:  # as many attributes as fit, repeated
            attribute = bytes([rng.choice([1, 2, 24, 31, 80]), 3, 65])
            yield _with_attributes(data, attribute * ((4096 - len(data)) // 3))
        elif kind == 6:  # another code (accounting, a reply, unknown ones)
            data[0] = rng.choice([0, 2, 3, 4, 5, 11, 12, 40, 255])
            yield bytes(data)
        elif kind == 7:  # a vendor-specific attribute with broken inner lengths
            inner = bytes([1, rng.choice([0, 1, 2, 40])]) + rng.randbytes(4)
            vsa = bytes([26, 2 + 4 + len(inner)]) + struct.pack("!I", 9) + inner
            yield _with_attributes(data, vsa)
        else:  # a Message-Authenticator of the wrong size
            size = rng.choice([0, 1, 8, 15, 17])
            yield _with_attributes(data, bytes([80, 2 + size]) + rng.randbytes(size))


def _with_attributes(packet: bytearray, attributes: bytes) -> bytes:
    grown = bytes(packet) + attributes
    return grown[:2] + struct.pack("!H", min(len(grown), 65535)) + grown[4:]


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_fuzzed_packets_are_dropped_and_the_server_still_answers(
    start_radius: StartRadius,
) -> None:
    deployment = start_radius(tokens=1)
    (fob,) = deployment.tokens
    server = deployment.servers[0]
    metrics_port = next(r for r in server.records if r.get("msg") == "serving")["metrics_port"]
    rng = random.Random(SEED)
    sent_codes = [fob.code(n) for n in range(3)]
    valid = access_request(
        {"User-Name": CITIZEN, "User-Password": sent_codes[0], "Calling-Station-Id": "fuzz"}
    )
    nas = Nas()
    answers = 0
    try:
        for count, datagram in enumerate(fuzzed(rng, valid), 1):
            nas.send(deployment.port, datagram)
            if count % 100 == 0:  # let the server keep up (and the kernel keep them)
                time.sleep(0.02)
                while nas.receive(0.001) is not None:
                    answers += 1
        deadline = time.monotonic() + 30
        malformed = 0.0
        while time.monotonic() < deadline:
            malformed = metric(metrics_port, 'otphsm_radius_dropped_total{reason="malformed"}')
            if malformed > PACKETS / 3:
                break
            time.sleep(0.2)
        while nas.receive(0.2) is not None:
            answers += 1
    finally:
        nas.close()
    assert malformed > PACKETS / 3  # counted, in the metric
    # only a mutation that left the request valid (damage past its length) was answered
    assert metric(metrics_port, "otphsm_radius_requests_total") == answers
    after = radclient(deployment.port, {"User-Name": fob.serial, "User-Password": sent_codes[1]})
    assert after.code == "Access-Accept", after.output
    log = deployment.log_text()
    for secret in (SECRET, *sent_codes):
        assert secret not in log
    assert "Traceback" not in log
