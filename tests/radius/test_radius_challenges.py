"""RADIUS challenges against a real `otphsm serve`, with radclient: an empty password gets
Access-Challenge naming two cells of the citizen's Security Card, answered with the State
given; for a citizen without a card, a NAS configured for it sends a login code by SMS (or
pushes it to the token app) and takes it back with the State, after the citizen's personal
part where the NAS requires it. A State answers once, and only for its citizen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.fault_support import CITIZEN, add_hotp_tokens
from support.radius_support import PHONE, StartRadius, card_authorisation, radclient

from otphsm.core.app.context import Actor, Role
from otphsm.core.app.grid import issue_grid_card
from otphsm.core.app.login import set_code_prefix
from otphsm.core.tokens import TokenKind
from otphsm.gateways.push_outbox import device_outbox
from otphsm.simulators.sms.inbox import read_sms_messages

pytestmark = [pytest.mark.softhsm, pytest.mark.timeout(180)]

ADMIN = Actor("test", Role.ADMIN)


def test_a_security_card_challenge_is_answered_with_its_state(start_radius: StartRadius) -> None:
    deployment = start_radius(tokens=0)
    issued = issue_grid_card(deployment.app, ADMIN, card_authorisation(deployment.app))
    station = {"User-Name": CITIZEN, "Calling-Station-Id": "192.0.2.10"}
    asked = radclient(deployment.port, {**station, "User-Password": ""})
    assert asked.code == "Access-Challenge", asked.output
    cells = re.search(r"cells (\d+) and (\d+)", asked.message)
    assert cells, asked.message
    state = asked.attributes["State"]
    first, second = (issued.values[int(cell) - 1] for cell in cells.groups())
    answered = radclient(
        deployment.port, {**station, "User-Password": f"{first} {second}", "State": state}
    )
    assert (answered.code, answered.message) == ("Access-Accept", "Access granted.")
    again = radclient(
        deployment.port, {**station, "User-Password": f"{first} {second}", "State": state}
    )
    assert again.code == "Access-Reject"  # the State was used up
    assert again.message == "The challenge has expired or is unknown: log in again."


def test_a_wrong_cell_answer_is_rejected(start_radius: StartRadius) -> None:
    deployment = start_radius(tokens=0)
    issued = issue_grid_card(deployment.app, ADMIN, card_authorisation(deployment.app))
    asked = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": ""})
    cells = re.search(r"cells (\d+) and (\d+)", asked.message)
    assert cells, asked.output
    right = issued.values[int(cells.group(1)) - 1]
    wrong = str((int(issued.values[int(cells.group(2)) - 1]) + 1) % 10 ** len(right)).zfill(
        len(right)
    )
    answered = radclient(
        deployment.port,
        {"User-Name": CITIZEN, "User-Password": right + wrong, "State": asked.attributes["State"]},
    )
    assert (answered.code, answered.message) == ("Access-Reject", "Wrong code.")


def sms_code(tmp_path: Path) -> re.Match[str]:
    """The code in the last SMS to the citizen's phone (group 1)."""
    messages = read_sms_messages(tmp_path / "sms-outbox.jsonl", PHONE)
    found = re.search(r"\b(\d{6})\b", messages[-1].text)
    assert found, messages[-1].text
    return found


def test_an_sms_login_code_challenge_is_answered_with_its_state(
    start_radius: StartRadius, tmp_path: Path
) -> None:
    deployment = start_radius(tokens=1, oob_challenge="sms")
    asked = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": ""})
    assert asked.code == "Access-Challenge", asked.output
    assert asked.message == "A code was sent by SMS: type the code."
    found = sms_code(tmp_path)
    state = asked.attributes["State"]
    other = radclient(
        deployment.port,
        {"User-Name": "BNCLRA85M41H501Z", "User-Password": found.group(1), "State": state},
    )
    assert other.code == "Access-Reject"  # another user cannot answer it (and it is used up)
    asked = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": ""})
    found = sms_code(tmp_path)
    answered = radclient(
        deployment.port,
        {"User-Name": CITIZEN, "User-Password": found.group(1), "State": asked.attributes["State"]},
    )
    assert answered.code == "Access-Accept", answered.output
    assert found.group(1) not in deployment.log_text()


def test_an_empty_password_is_refused_where_the_nas_sends_no_codes(
    start_radius: StartRadius, tmp_path: Path
) -> None:
    deployment = start_radius(tokens=1)
    refused = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": ""})
    assert (refused.code, refused.message) == ("Access-Reject", "Type the code your token shows.")
    assert read_sms_messages(tmp_path / "sms-outbox.jsonl") == []


def test_a_login_code_pushed_to_the_token_app_is_typed_after_the_personal_part(
    start_radius: StartRadius, tmp_path: Path
) -> None:
    deployment = start_radius(tokens=0, oob_challenge="push", require_prefix=True)
    (phone,) = add_hotp_tokens(deployment.app, 1, prefix="MOB", kind=TokenKind.MOBILE)
    set_code_prefix(deployment.app, ADMIN, CITIZEN, "K7Q2")
    asked = radclient(deployment.port, {"User-Name": CITIZEN, "User-Password": ""})
    assert asked.code == "Access-Challenge", asked.output
    assert asked.message == (
        "A code was sent to your token app: type your personal part, then the code."
    )
    pushed = device_outbox(tmp_path / "push-outbox", phone.serial).read_text(encoding="utf-8")
    found = re.findall(r"\b(\d{6})\b", pushed)
    assert found, pushed
    answered = radclient(
        deployment.port,
        {
            "User-Name": CITIZEN,
            "User-Password": "K7Q2" + found[-1],
            "State": asked.attributes["State"],
        },
    )
    assert answered.code == "Access-Accept", answered.output


def test_a_nas_requiring_the_personal_part_asks_it_before_the_cells(
    start_radius: StartRadius,
) -> None:
    deployment = start_radius(tokens=0, require_prefix=True)
    issued = issue_grid_card(deployment.app, ADMIN, card_authorisation(deployment.app))
    set_code_prefix(deployment.app, ADMIN, CITIZEN, "K7Q2")
    station = {"User-Name": CITIZEN, "Calling-Station-Id": "192.0.2.11"}

    def cells_typed() -> tuple[str, str]:
        asked = radclient(deployment.port, {**station, "User-Password": ""})
        assert "type your personal part, then the values of cells" in asked.message
        cells = re.search(r"cells (\d+) and (\d+)", asked.message)
        assert cells, asked.output
        typed = " ".join(issued.values[int(cell) - 1] for cell in cells.groups())
        return typed, asked.attributes["State"]

    typed, state = cells_typed()
    bare = radclient(deployment.port, {**station, "User-Password": typed, "State": state})
    assert bare.code == "Access-Reject"  # the cells alone are not enough
    typed, state = cells_typed()
    answered = radclient(
        deployment.port, {**station, "User-Password": f"K7Q2 {typed}", "State": state}
    )
    assert answered.code == "Access-Accept", answered.output
