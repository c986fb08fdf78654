"""Out-of-band login codes end to end over gRPC with mTLS: a relying party asks for a code, the
citizen receives it by SMS (the outbox) or push (the token app's outbox) and types it back.
Single use, 10 minutes, superseded by a newer one, 3 wrong → 60 s, quotas per citizen and per
caller, the personal prefix, and a gateway that fails."""

from __future__ import annotations

import io

import grpc
import pytest
from support.factor_fixtures import (
    StartService,
    activate_phone,
    assert_nowhere,
    code_in,
    enrol,
    observable_text,
    oob_stub,
    push_outbox,
    rpc_error,
    trailing,
)
from support.service_fixtures import TWO_ROLES, ServiceUnderTest

from otphsm.cli.main import main as cli_main
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.sms.inbox import SentSms, read_push_messages, read_sms_messages
from otphsm.v1 import common_pb2, oob_pb2

pytestmark = pytest.mark.softhsm

PHONE = "+393331234567"
LAURA_PHONE = "+393339876543"
OK = common_pb2.VERIFY_RESULT_OK
WRONG = common_pb2.VERIFY_RESULT_WRONG_CODE
LOCKED = common_pb2.VERIFY_RESULT_LOCKED
REPLAYED = common_pb2.VERIFY_RESULT_REPLAYED
EXPIRED = common_pb2.VERIFY_RESULT_EXPIRED
PUSH = oob_pb2.DELIVERY_CHANNEL_PUSH


def request_code(
    service: ServiceUnderTest, cf: str, channel: int = 0, client: str = "verifier"
) -> oob_pb2.RequestLoginCodeResponse:
    response: oob_pb2.RequestLoginCodeResponse = oob_stub(service, client).RequestLoginCode(
        oob_pb2.RequestLoginCodeRequest(codice_fiscale=cf, channel=channel)
    )
    return response


def verify(service: ServiceUnderTest, cf: str, code: str) -> common_pb2.VerifyResponse:
    response: common_pb2.VerifyResponse = oob_stub(service).VerifyLoginCode(
        oob_pb2.VerifyLoginCodeRequest(codice_fiscale=cf, code=code)
    )
    return response


def sms_sent(service: ServiceUnderTest, to: str | None = None) -> list[SentSms]:
    return read_sms_messages(service.sms.outbox, to)


def last_sms(service: ServiceUnderTest, phone: str = PHONE) -> str:
    return code_in(sms_sent(service, phone)[-1].text)


def other_than(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_login_code_is_single_use_and_lasts_ten_minutes(
    start_factor_service: StartService,
    cns_card_1024: CnsCard,
    request: pytest.FixtureRequest,
    engine: str,
) -> None:
    url = request.getfixturevalue("postgres_store_url") if engine == "postgres" else ""
    service = start_factor_service(url)
    cf = enrol(service, cns_card_1024, PHONE)

    sent = request_code(service, cf)
    assert sent.channel == oob_pb2.DELIVERY_CHANNEL_SMS and not sent.prefix_required
    assert sent.expires_at == int(service.clock.now()) + 600
    code = last_sms(service)
    assert "10 minutes" in sms_sent(service, PHONE)[-1].text

    assert verify(service, cf, other_than(code)).result == WRONG
    assert verify(service, cf, code).result == OK
    assert verify(service, cf, code).result == REPLAYED  # used up

    request_code(service, cf)
    fresh = last_sms(service)
    service.clock.advance(600)
    answer = verify(service, cf, fresh)
    assert answer.result == EXPIRED and answer.serial == ""
    malformed = rpc_error(lambda: verify(service, cf, "12345"))
    assert malformed.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_a_new_request_supersedes_the_previous_code(
    start_factor_service: StartService, cns_card_1024: CnsCard
) -> None:
    service = start_factor_service()
    cf = enrol(service, cns_card_1024, PHONE)
    request_code(service, cf)
    first = last_sms(service)
    request_code(service, cf)
    second = last_sms(service)
    if first != second:
        assert verify(service, cf, first).result == WRONG
    assert verify(service, cf, second).result == OK
    never = rpc_error(lambda: verify(service, "BNCLRA90L55L378U", "123456"))
    assert never.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_three_wrong_codes_start_a_sixty_second_wait(
    start_factor_service: StartService, cns_card_1024: CnsCard
) -> None:
    service = start_factor_service()
    cf = enrol(service, cns_card_1024, PHONE)
    request_code(service, cf)
    code = last_sms(service)
    wrong = other_than(code)
    assert [verify(service, cf, wrong).result for _ in range(2)] == [WRONG, WRONG]
    third = verify(service, cf, wrong)
    assert (third.result, third.retry_after_seconds) == (WRONG, 60)
    service.clock.advance(30)
    waiting = verify(service, cf, code)  # even the right code waits
    assert (waiting.result, waiting.retry_after_seconds) == (LOCKED, 30)
    service.clock.advance(30)
    assert verify(service, cf, code).result == OK


def test_the_personal_part_is_typed_first_and_never_sent(
    start_factor_service: StartService, cns_card_1024: CnsCard
) -> None:
    service = start_factor_service()
    cf = enrol(service, cns_card_1024, PHONE)
    station = oob_stub(service, "enroller")
    for bad in ("ab1", "ab12c", "ab-2", "àb12"):
        refused = rpc_error(
            lambda bad=bad: station.SetCodePrefix(
                oob_pb2.SetCodePrefixRequest(codice_fiscale=cf, prefix=bad)
            )
        )
        assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    set_prefix = station.SetCodePrefix(
        oob_pb2.SetCodePrefixRequest(codice_fiscale=cf, prefix="k9x2")
    )
    assert set_prefix.prefix_set
    assert "K9X2" not in str(service.snapshot()).upper()

    assert request_code(service, cf).prefix_required
    text = sms_sent(service, PHONE)[-1].text
    assert "personal part" in text and "K9X2" not in text.upper()
    code = code_in(text)
    digits_only = rpc_error(lambda: verify(service, cf, code))
    assert digits_only.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "personal part" in (digits_only.details() or "")  # type: ignore[attr-defined]
    assert verify(service, cf, "K9X3" + code).result == WRONG  # a wrong part counts
    assert verify(service, cf, "K9X2" + other_than(code)).result == WRONG
    assert verify(service, cf, "k9x2" + code).result == OK  # either case

    cleared = station.SetCodePrefix(oob_pb2.SetCodePrefixRequest(codice_fiscale=cf, prefix=""))
    assert not cleared.prefix_set
    assert not request_code(service, cf).prefix_required
    assert verify(service, cf, last_sms(service)).result == OK
    # a new card authorisation keeps the citizen's part
    station.SetCodePrefix(oob_pb2.SetCodePrefixRequest(codice_fiscale=cf, prefix="ZZ00"))
    service.authorise(cns_card_1024)
    assert request_code(service, cf).prefix_required


def test_the_citizen_quota_refuses_a_fourth_code_in_ten_minutes(
    start_factor_service: StartService, cns_card_1024: CnsCard
) -> None:
    service = start_factor_service()
    cf = enrol(service, cns_card_1024, PHONE)
    for _ in range(3):
        request_code(service, cf)
        service.clock.advance(100)
    before = (service.snapshot(), len(sms_sent(service)))
    refused = rpc_error(lambda: request_code(service, cf))
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    metadata = trailing(refused)
    assert metadata["otphsm-reason"] == "RATE_LIMITED"
    assert metadata["retry-after-seconds"] == "300"  # the first leaves the window at 600
    assert (service.snapshot(), len(sms_sent(service))) == before  # nothing made or sent
    pending = last_sms(service)
    service.clock.advance(300)
    request_code(service, cf)
    assert verify(service, cf, pending).result in (WRONG, OK)  # superseded (or the same digits)
    assert verify(service, cf, last_sms(service)).result in (OK, REPLAYED)


def test_the_caller_quota_holds_across_citizens_and_not_across_callers(
    start_factor_service: StartService, cns_card_1024: CnsCard, cns_card_2048: CnsCard
) -> None:
    service = start_factor_service(login_codes_per_caller=3, login_code_caller_window_seconds=60)
    mario = enrol(service, cns_card_1024, PHONE)
    laura = enrol(service, cns_card_2048, LAURA_PHONE)
    request_code(service, mario)
    request_code(service, mario)
    request_code(service, laura)
    refused = rpc_error(lambda: request_code(service, laura))
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert trailing(refused)["retry-after-seconds"] == "60"
    # another relying party has its own quota; the citizen's own (3 per 10 min) still holds
    request_code(service, laura, client=TWO_ROLES)
    service.clock.advance(60)
    request_code(service, laura)
    citizen_full = rpc_error(lambda: request_code(service, laura, client=TWO_ROLES))
    assert citizen_full.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert trailing(citizen_full)["retry-after-seconds"] == "540"


def test_a_code_can_be_pushed_to_the_token_app(
    start_factor_service: StartService,
    cns_card_1024: CnsCard,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = start_factor_service()
    cf = enrol(service, cns_card_1024)  # no phone number at all
    no_app = rpc_error(lambda: request_code(service, cf, PUSH))
    assert no_app.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    no_phone = rpc_error(lambda: request_code(service, cf))
    assert no_phone.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]

    phone = activate_phone(service, cns_card_1024)
    sent = request_code(service, cf, PUSH)
    assert (sent.channel, sent.device_serial) == (PUSH, phone.serial)
    outbox = push_outbox(service)
    code = code_in(read_push_messages(outbox.directory, phone.serial)[-1].text)
    assert sms_sent(service) == []

    # the citizen's phone shows it (the simulated push service's CLI)
    assert (
        cli_main(
            [
                "sim",
                "push",
                "show",
                "--outbox",
                str(outbox.directory),
                "--serial",
                phone.serial,
                "--last",
            ]
        )
        == 0
    )
    assert code in capsys.readouterr().out
    assert verify(service, cf, code).result == OK
    assert (
        cli_main(
            ["sim", "push", "show", "--outbox", str(outbox.directory), "--serial", "MOB-0000000000"]
        )
        == 1
    )
    capsys.readouterr()
    monkeypatch.delenv("OTPHSM_PUSH_OUTBOX", raising=False)
    assert cli_main(["sim", "push", "show", "--serial", phone.serial]) == 2
    assert "--outbox DIR or $OTPHSM_PUSH_OUTBOX" in capsys.readouterr().err
    monkeypatch.setenv("OTPHSM_PUSH_OUTBOX", str(outbox.directory))  # as `otphsm token inbox`
    assert cli_main(["sim", "push", "show", "--serial", phone.serial, "--last"]) == 0
    assert code in capsys.readouterr().out


def test_an_undelivered_code_is_withdrawn(
    start_factor_service: StartService, cns_card_1024: CnsCard
) -> None:
    service = start_factor_service(login_codes_per_citizen=4)
    cf = enrol(service, cns_card_1024, PHONE)
    request_code(service, cf)
    earlier = last_sms(service)
    service.sms.fail_next(1)
    down = rpc_error(lambda: request_code(service, cf))
    assert down.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert trailing(down)["otphsm-reason"] == "DEVICE_UNAVAILABLE"
    # The failed request made a code (superseding the earlier one) and withdrew it: no code
    # is left that anyone could receive or guess.
    rows = service.snapshot()["oob_codes"]
    assert len(rows) == 2 and all(row[9] for row in rows)  # both superseded
    missing = rpc_error(lambda: verify(service, cf, earlier))
    assert missing.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    actions = [entry.action for entry in service.store.audit_entries()]
    assert actions[-1] == "login_code_undelivered"

    push = push_outbox(service)
    phone = activate_phone(service, cns_card_1024)
    push.fail_next(1)
    assert rpc_error(lambda: request_code(service, cf, PUSH)).code() is (  # type: ignore[attr-defined]
        grpc.StatusCode.UNAVAILABLE
    )
    assert read_push_messages(push.directory, phone.serial) == []
    request_code(service, cf)
    assert verify(service, cf, last_sms(service)).result == OK
    # the quota counts failed sends too (a timed-out carrier may have delivered them)
    spent = rpc_error(lambda: request_code(service, cf))
    assert spent.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]


def test_no_code_or_personal_part_reaches_logs_audit_metrics_or_errors(
    start_factor_service: StartService, cns_card_1024: CnsCard, captured_logs: io.StringIO
) -> None:
    service = start_factor_service(login_codes_per_citizen=10)
    cf = enrol(service, cns_card_1024, PHONE)
    oob_stub(service, "enroller").SetCodePrefix(
        oob_pb2.SetCodePrefixRequest(codice_fiscale=cf, prefix="Q7W3")
    )
    secrets = ["Q7W3"]
    errors = []
    for _ in range(3):
        request_code(service, cf)
        code = last_sms(service)
        secrets += [code, "Q7W3" + code]
        errors.append(rpc_error(lambda code=code: verify(service, cf, code)))  # no prefix
        wrong = "Q7W3" + other_than(code)
        secrets.append(wrong)
        assert verify(service, cf, wrong).result == WRONG
        assert verify(service, cf, "q7w3" + code).result == OK
    errors.append(rpc_error(lambda: verify(service, cf, "Q7W3" + "12345x")))
    texts = observable_text(service, captured_logs, errors)
    assert "VerifyLoginCode" in texts["metrics"] and "login_code_accepted" in texts["audit"]
    assert cf in texts["logs"] and "RequestLoginCode" in texts["logs"]
    assert_nowhere(texts, secrets)
