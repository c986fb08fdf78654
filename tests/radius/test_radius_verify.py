"""RADIUS against a real `otphsm serve`, with radclient (freeradius-utils) as the NAS: a code
of the citizen's token accepted by codice fiscale and by serial, a wrong one rejected in plain
words that echo nothing typed, three wrong codes from one Calling-Station-Id locking that
device out while another device still logs in, a NAS's own budget of failed checks, the
personal part required by a NAS, requests from an undeclared address, without a
Message-Authenticator or with a forged one dropped unanswered, and a graceful stop."""

from __future__ import annotations

import pytest
from support.fault_support import CITIZEN
from support.radius_support import SECRET, StartRadius, radclient

pytestmark = [pytest.mark.softhsm, pytest.mark.timeout(180)]


def test_a_right_code_is_accepted_and_a_wrong_one_rejected(start_radius: StartRadius) -> None:
    deployment = start_radius(tokens=1)
    (fob,) = deployment.tokens
    accepted = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": fob.code(0)})
    assert accepted.code == "Access-Accept", accepted.output
    assert "Message-Authenticator" in accepted.attributes  # every answer carries one
    by_serial = radclient(deployment.port, {"User-Name": fob.serial, "User-Password": fob.code(1)})
    assert by_serial.code == "Access-Accept", by_serial.output
    wrong = fob.wrong_code(2)
    rejected = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": wrong})
    assert rejected.code == "Access-Reject"
    assert rejected.message == "Wrong code."
    assert wrong not in rejected.output.split("Received", 1)[1]
    replayed = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": fob.code(0)})
    assert (replayed.code, replayed.message) == (
        "Access-Reject",
        "This code was already used: wait for the next one.",
    )


def test_three_wrong_codes_lock_out_the_calling_station_not_the_citizen(
    start_radius: StartRadius,
) -> None:
    deployment = start_radius(tokens=1)
    (fob,) = deployment.tokens
    laptop = {"User-Name": CITIZEN, "Calling-Station-Id": "02-00-5e-00-53-01"}
    answers = [
        radclient(deployment.port, {**laptop, "User-Password": fob.wrong_code(0)}).message
        for _ in range(3)
    ]
    assert answers[:2] == ["Wrong code.", "Wrong code."]
    assert answers[2].startswith("Wrong code. Too many failures: try again in 60 seconds")
    locked = radclient(deployment.port, {**laptop, "User-Password": fob.code(0)})
    assert locked.code == "Access-Reject"
    assert locked.message.startswith("Too many failures: try again in")
    phone = {"User-Name": CITIZEN, "Calling-Station-Id": "02-00-5e-00-53-02"}
    other = radclient(deployment.port, {**phone, "User-Password": fob.code(0)})
    assert other.code == "Access-Accept", other.output
    # the origin was the device's, not the NAS's: the token's own counter is untouched
    assert deployment.failures(fob.serial) == (1, 0)
    actions = [(e.action, e.actor) for e in deployment.app.store.audit_entries()]
    assert ("origin_locked", "radius:nas") in actions


def test_a_nas_past_its_failed_check_budget_is_refused_before_any_code_is_looked_at(
    start_radius: StartRadius,
) -> None:
    deployment = start_radius(tokens=1, burst=2, failures_per_second=0.01)
    (fob,) = deployment.tokens
    for device in ("dev-a", "dev-b"):
        wrong = {"User-Name": fob.serial, "User-Password": fob.wrong_code(0)}
        assert radclient(deployment.port, {**wrong, "Calling-Station-Id": device}).code
    refused = radclient(deployment.port, {"User-Name": fob.serial, "User-Password": fob.code(0)})
    assert refused.code == "Access-Reject"
    assert refused.message.startswith("Too many failed attempts from this access server")
    assert deployment.failures(fob.serial) == (0, 0)  # the right code was not even checked


def test_an_undeclared_source_address_gets_no_answer(start_radius: StartRadius) -> None:
    deployment = start_radius(tokens=1, addresses=["192.0.2.1"])
    (fob,) = deployment.tokens
    request = {"User-Name": fob.serial, "User-Password": fob.code(0)}
    assert radclient(deployment.port, request, timeout=1).code is None
    assert deployment.failures(fob.serial) == (0, 0)
    assert '"reason": "unknown_client"' in deployment.log_text()


def test_a_nas_may_require_the_personal_part_before_every_code(start_radius: StartRadius) -> None:
    from otphsm.core.app.context import Actor, Role
    from otphsm.core.app.login import set_code_prefix

    deployment = start_radius(tokens=1, require_prefix=True)
    (fob,) = deployment.tokens
    set_code_prefix(deployment.app, Actor("test", Role.ADMIN), CITIZEN, "K7Q2")
    station = {"User-Name": CITIZEN, "Calling-Station-Id": "198.51.100.4"}
    bare = radclient(deployment.port, {**station, "User-Password": fob.code(0)})
    assert bare.code == "Access-Reject"
    wrong_part = radclient(deployment.port, {**station, "User-Password": "AAAA" + fob.code(0)})
    assert (wrong_part.code, wrong_part.message) == ("Access-Reject", "Wrong code.")
    assert deployment.failures(fob.serial) == (0, 0)  # the code was never looked at
    right = radclient(deployment.port, {**station, "User-Password": "k7q2" + fob.code(0)})
    assert right.code == "Access-Accept", right.output


def test_requests_without_or_with_a_forged_message_authenticator_are_dropped(
    start_radius: StartRadius,
) -> None:
    deployment = start_radius(tokens=1)
    (fob,) = deployment.tokens
    request = {"User-Name": CITIZEN, "User-Password": fob.code(0)}
    unsigned = radclient(deployment.port, request, message_authenticator=False, timeout=1)
    assert unsigned.code is None, unsigned.output  # no answer at all, not even a reject
    forged = radclient(deployment.port, request, secret=SECRET[::-1], timeout=1)
    assert forged.code is None, forged.output
    assert deployment.failures(fob.serial) == (0, 0)  # neither was verified
    signed = radclient(deployment.port, request)
    assert signed.code == "Access-Accept", signed.output
    reasons = deployment.log_text()
    assert '"reason": "no_message_authenticator"' in reasons
    assert '"reason": "bad_message_authenticator"' in reasons


def test_sigterm_stops_the_radius_front_end_with_the_server(start_radius: StartRadius) -> None:
    deployment = start_radius(tokens=1)
    (fob,) = deployment.tokens
    server = deployment.servers[0]
    assert radclient(deployment.port, {"User-Name": fob.serial, "User-Password": fob.code(0)}).code
    server.stop()  # SIGTERM, as an operator's service manager sends it
    assert server.process.returncode == 0
    assert [r["msg"] for r in server.records][-1] == "stopped"
    gone = radclient(deployment.port, {"User-Name": fob.serial, "User-Password": fob.code(1)})
    assert gone.code is None


def test_status_server_says_the_server_is_up(start_radius: StartRadius) -> None:
    deployment = start_radius(tokens=0)
    status = radclient(deployment.port, {}, command="status")
    assert (status.code, status.message) == ("Access-Accept", "otphsm is up.")
