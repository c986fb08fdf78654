"""Security Cards end to end over gRPC with mTLS: issued after a card authorisation, printed
(the citizen reads the values off the PDF), two cells per login, single-use and expiring
challenges, lockout as for an OTP, revocation and reissue, and no cell value anywhere else."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import grpc
import pytest
from support.factor_fixtures import (
    StartService,
    assert_nowhere,
    enrol,
    grid_stub,
    observable_text,
    rpc_error,
    trailing,
)
from support.pdf_checks import dark_fraction, pdf_text, read_grid
from support.service_fixtures import ServiceUnderTest

from otphsm.core.records import GridCardState
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.v1 import common_pb2, enrolment_pb2, grid_pb2

pytestmark = pytest.mark.softhsm

OK = common_pb2.VERIFY_RESULT_OK
WRONG = common_pb2.VERIFY_RESULT_WRONG_CODE
LOCKED = common_pb2.VERIFY_RESULT_LOCKED
EXPIRED = common_pb2.VERIFY_RESULT_EXPIRED
PHONE = "+393331234567"


class Citizen:
    """The holder of a printed card, logging in at a relying party."""

    def __init__(self, service: ServiceUnderTest, cf: str, cells: dict[int, str]) -> None:
        self.service = service
        self.cf = cf
        self.cells = cells
        self.verifier = grid_stub(service)

    def challenge(self) -> grid_pb2.GridChallengeResponse:
        asked: grid_pb2.GridChallengeResponse = self.verifier.GridChallenge(
            grid_pb2.GridChallengeRequest(codice_fiscale=self.cf)
        )
        return asked

    def answer(self, first: str, second: str) -> common_pb2.VerifyResponse:
        answered: common_pb2.VerifyResponse = self.verifier.VerifyGridAnswer(
            grid_pb2.VerifyGridAnswerRequest(
                codice_fiscale=self.cf, first_value=first, second_value=second
            )
        )
        return answered

    def right(self, asked: grid_pb2.GridChallengeResponse) -> tuple[str, str]:
        return self.cells[asked.first_cell], self.cells[asked.second_cell]

    def wrong(self, asked: grid_pb2.GridChallengeResponse) -> tuple[str, str]:
        first, second = self.right(asked)
        digits = len(first)
        return first, f"{(int(second) + 1) % 10**digits:0{digits}d}"

    def log_in(self) -> common_pb2.VerifyResponse:
        return self.answer(*self.right(self.challenge()))


def issue(
    service: ServiceUnderTest, card: CnsCard, tmp_path: Path
) -> tuple[grid_pb2.IssueGridCardResponse, Citizen]:
    authorised = service.authorise(card)
    issued: grid_pb2.IssueGridCardResponse = grid_stub(service, "enroller").IssueGridCard(
        grid_pb2.IssueGridCardRequest(authorisation_id=authorised.authorisation_id)
    )
    printed = read_grid(pdf_text(issued.pdf, tmp_path))
    return issued, Citizen(service, authorised.citizen.codice_fiscale, printed)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_card_is_issued_printed_and_used_to_log_in(
    start_factor_service: StartService,
    cns_card_1024: CnsCard,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    engine: str,
) -> None:
    url = request.getfixturevalue("postgres_store_url") if engine == "postgres" else ""
    service = start_factor_service(url)
    authorised = service.authorise(cns_card_1024)
    station = grid_stub(service, "enroller")
    issued = station.IssueGridCard(
        grid_pb2.IssueGridCardRequest(authorisation_id=authorised.authorisation_id)
    )
    card = issued.card
    assert card.serial.startswith("GRID-") and card.codice_fiscale == "RSSMRA80A01L378S"
    assert (card.state, card.cells, card.cell_digits) == (grid_pb2.GRID_CARD_STATE_ACTIVE, 50, 3)
    assert list(issued.replaced_serials) == []

    # the PDF renders: not blank, and its text has the serial, the holder and 50 cells
    assert issued.pdf.startswith(b"%PDF-")
    assert dark_fraction(issued.pdf, tmp_path) > 0.01
    text = pdf_text(issued.pdf, tmp_path)
    assert card.serial in text and "Mario Rossi" in text.title()
    cells = read_grid(text)
    assert sorted(cells) == list(range(1, 51))
    assert all(len(v) == 3 and v.isdigit() for v in cells.values())

    # the authorisation is spent, and nothing stored holds a printed value
    again = rpc_error(
        lambda: station.IssueGridCard(
            grid_pb2.IssueGridCardRequest(authorisation_id=authorised.authorisation_id)
        )
    )
    assert again.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    row = next(r for r in service.snapshot()["grid_cards"] if r[0] == card.serial)
    assert "".join(cells.values()) not in repr(row)

    citizen = Citizen(service, card.codice_fiscale, cells)
    asked = citizen.challenge()
    assert asked.serial == card.serial and asked.first_cell != asked.second_cell
    assert {asked.first_cell, asked.second_cell} <= set(range(1, 51))
    assert asked.expires_at == int(service.clock.now()) + 300
    assert citizen.challenge() == asked  # asked again while pending: the same two cells
    answered = citizen.answer(*citizen.right(asked))
    assert (answered.result, answered.serial) == (OK, card.serial)
    reused = rpc_error(lambda: citizen.answer(*citizen.right(asked)))
    assert reused.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "ask for one" in (reused.details() or "")  # type: ignore[attr-defined]


def test_the_same_pair_is_never_asked_twice_in_a_row(
    start_factor_service: StartService, cns_card_1024: CnsCard, tmp_path: Path
) -> None:
    service = start_factor_service(grid_cells=10)  # 45 pairs: a repeat would soon show
    _, citizen = issue(service, cns_card_1024, tmp_path)
    assert len(citizen.cells) == 10
    pairs = []
    for round_number in range(40):
        asked = citizen.challenge()
        pairs.append((asked.first_cell, asked.second_cell))
        if round_number % 3 == 2:
            service.clock.advance(300)  # abandoned: it expires
            assert citizen.answer(*citizen.right(asked)).result == EXPIRED
        else:
            assert citizen.answer(*citizen.right(asked)).result == OK
    assert all(a != b for a, b in itertools.pairwise(pairs))
    assert len(set(pairs)) > 10


def test_wrong_answers_lock_the_card_for_longer_each_time(
    start_factor_service: StartService, cns_card_1024: CnsCard, tmp_path: Path
) -> None:
    service = start_factor_service()
    _, citizen = issue(service, cns_card_1024, tmp_path)
    for expected_wait in (60, 120):
        results = []
        for _ in range(3):
            answered = citizen.answer(*citizen.wrong(citizen.challenge()))
            results.append((answered.result, answered.retry_after_seconds))
        assert results == [(WRONG, 0), (WRONG, 0), (WRONG, expected_wait)]
        refused = rpc_error(citizen.challenge)
        assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert trailing(refused)["retry-after-seconds"] == str(expected_wait)
        service.clock.advance(expected_wait)
    assert citizen.log_in().result == OK
    answered = citizen.answer(*citizen.wrong(citizen.challenge()))
    assert (answered.result, answered.retry_after_seconds) == (WRONG, 0)  # the count restarted
    audit = [e.action for e in service.store.audit_entries()]
    assert audit.count("grid_card_locked") == 2


def test_while_locked_even_the_right_cells_answer_locked(
    start_factor_service: StartService, cns_card_1024: CnsCard, tmp_path: Path
) -> None:
    service = start_factor_service()
    _, citizen = issue(service, cns_card_1024, tmp_path)
    for _ in range(3):
        asked = citizen.challenge()
        citizen.answer(*citizen.wrong(asked))
    service.clock.advance(20)
    locked = citizen.answer(*citizen.right(asked))  # the values of the last pair asked
    assert (locked.result, locked.retry_after_seconds) == (LOCKED, 40)
    service.clock.advance(40)
    assert citizen.log_in().result == OK


def test_revocation_and_reissue(
    start_factor_service: StartService, cns_card_1024: CnsCard, tmp_path: Path
) -> None:
    service = start_factor_service()
    first, citizen = issue(service, cns_card_1024, tmp_path)
    second, renewed = issue(service, cns_card_1024, tmp_path)  # reissued: the old one is revoked
    assert list(second.replaced_serials) == [first.card.serial]
    assert service.store.get_grid_card(first.card.serial).state is GridCardState.REVOKED
    asked = renewed.challenge()
    assert asked.serial == second.card.serial
    if citizen.right(asked) != renewed.right(asked):
        assert citizen.answer(*citizen.right(asked)).result == WRONG  # the old card's values
    assert renewed.log_in().result == OK

    operator = grid_stub(service, "admin")
    revoked = operator.RevokeGridCard(grid_pb2.RevokeGridCardRequest(serial=second.card.serial))
    assert revoked.card.state == grid_pb2.GRID_CARD_STATE_REVOKED
    assert revoked.card.revoked_at == int(service.clock.now())
    gone = rpc_error(renewed.challenge)
    assert gone.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    twice = rpc_error(
        lambda: operator.RevokeGridCard(grid_pb2.RevokeGridCardRequest(serial=second.card.serial))
    )
    assert twice.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    unknown = rpc_error(
        lambda: operator.RevokeGridCard(grid_pb2.RevokeGridCardRequest(serial="GRID-FFFFFFFFFF"))
    )
    assert unknown.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]

    third, latest = issue(service, cns_card_1024, tmp_path)
    assert list(third.replaced_serials) == []
    assert latest.log_in().result == OK
    actions = [e.action for e in service.store.audit_entries() if e.action.startswith("grid")]
    assert actions.count("grid_card_issued") == 3 and actions.count("grid_card_revoked") == 2


def test_an_sms_code_cannot_stand_in_for_the_card(
    start_factor_service: StartService, cns_card_1024: CnsCard, tmp_path: Path
) -> None:
    """An SMS code earns a phone replacement, never a Security Card: the card is a second
    factor on its own, so it is handed out only on the strength of the CNS card."""
    service = start_factor_service()
    cf = enrol(service, cns_card_1024, phone_number=PHONE)
    station = service.enrolment()
    station.SendReplacementCode(enrolment_pb2.SendReplacementCodeRequest(codice_fiscale=cf))
    by_sms = station.AuthoriseWithSmsCode(
        enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=cf, code=service.sms_code(PHONE))
    )
    before = service.store.snapshot()
    refused = rpc_error(
        lambda: grid_stub(service, "enroller").IssueGridCard(
            grid_pb2.IssueGridCardRequest(authorisation_id=by_sms.authorisation_id)
        )
    )
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "card" in (refused.details() or "")  # type: ignore[attr-defined]
    assert service.store.snapshot() == before
    assert service.store.grid_cards_of(cf) == []
    # The authorisation is still there for what it is good for: a replacement phone.
    reissued = station.IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=by_sms.authorisation_id, method=enrolment_pb2.ACTIVATION_METHOD_CODE
        )
    )
    assert reissued.token.serial


def test_no_cell_value_reaches_logs_audit_metrics_or_errors(
    start_factor_service: StartService,
    cns_card_1024: CnsCard,
    tmp_path: Path,
    captured_logs: io.StringIO,
) -> None:
    service = start_factor_service(grid_cell_digits=6)
    issued, citizen = issue(service, cns_card_1024, tmp_path)
    errors = []
    for _ in range(2):
        assert citizen.answer(*citizen.wrong(citizen.challenge())).result == WRONG
        errors.append(rpc_error(lambda: citizen.answer("000000", "000000")))  # none pending
    assert citizen.answer(*citizen.wrong(citizen.challenge())).retry_after_seconds == 60
    errors.append(rpc_error(citizen.challenge))  # locked
    service.clock.advance(60)
    assert citizen.log_in().result == OK
    errors.append(rpc_error(lambda: citizen.answer("12345", "1234567")))
    texts = observable_text(service, captured_logs, errors)
    assert "VerifyGridAnswer" in texts["metrics"] and issued.card.serial in texts["logs"]
    assert "grid_card_issued" in texts["audit"]
    secrets = list(citizen.cells.values())
    assert len(secrets) == 50 and all(len(s) == 6 for s in secrets)
    assert_nowhere(texts, secrets)
    assert_nowhere({"store": repr(service.snapshot())}, secrets)


def test_roles_issue_and_answer(start_factor_service: StartService) -> None:
    service = start_factor_service()
    denied = rpc_error(
        lambda: grid_stub(service, "verifier").IssueGridCard(
            grid_pb2.IssueGridCardRequest(authorisation_id="au-1")
        )
    )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    malformed = rpc_error(
        lambda: grid_stub(service).VerifyGridAnswer(
            grid_pb2.VerifyGridAnswerRequest(
                codice_fiscale="RSSMRA80A01L378S", first_value="1" * 99
            )
        )
    )
    assert malformed.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
