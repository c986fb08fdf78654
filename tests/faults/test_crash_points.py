"""Crash consistency: a real `otphsm serve` ends (`os._exit`, as a power cut would) at each
named write point of each multi-write use case, on SQLite and on PostgreSQL; the test starts
it again and checks that the database holds all of the use case or none of it, that the audit
chain verifies, and that the client's retry succeeds.

Write points (`App.transaction`): `<use case>.before_commit` (every write made, none
committed) and `<use case>.after_commit` (committed, the answer not yet sent). The hook is
`otphsm.simulators.crash`, switched on by the environment of the serve process only. The
deployment is `support.crash_rig`; the smaller units of work are in test_crash_points_more.py.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from support.app_fixtures import OPERATOR
from support.crash_rig import (
    CF,
    DEVICE,
    POINTS,
    STORAGES,
    TEST_ACTOR,
    Rig,
    activated_phone,
    dies,
    in_process,
    open_store_at,
    refused_as_used,
)
from support.fobs import PSK, batch
from support.service_devices import TokenApp
from support.store_records import citizen

from otphsm.core.app import oob
from otphsm.core.app.grid import issue_grid_card
from otphsm.core.app.validation import prove_possession
from otphsm.core.ports import Store
from otphsm.core.records import GridCardState, OobPurpose
from otphsm.core.tokens import TokenState
from otphsm.pskc import import_pskc
from otphsm.simulators.token.pskc_factory import pskc_document
from otphsm.store import open_store
from otphsm.v1 import (
    admin_pb2,
    common_pb2,
    device_pb2,
    enrolment_pb2,
    grid_pb2,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(120)]

# --- the invariants ------------------------------------------------------------------------


def check_invariants(store: Store, authorisations: list[str]) -> None:
    """`authorisations`: every one granted to the citizen. Every token of the citizen has
    its activation and its creation entry; an activation is used only with its token's seed
    written (and audited); the citizen's tokens number the authorisations used, so none was
    used without a complete token."""
    tokens = store.tokens_of(CF)
    activations = {a.token_serial: a for a in store.activations_of(CF)}
    audited = {(e.action, e.subject) for e in store.audit_entries()}
    used = [a for a in authorisations if (found := store.get_authorisation(a)) and found.used_at]
    assert len(tokens) == len(used), (tokens, used)
    for token in tokens:
        assert token.serial in activations, f"token {token.serial} without its activation"
        assert ("token_created", token.serial) in audited, f"{token.serial} not audited"
        activation = activations[token.serial]
        if activation.used_at is not None:
            assert token.seed is not None, f"activation of {token.serial} used, no seed"
            assert ("device_activated", token.serial) in audited
        elif token.state is TokenState.PENDING:
            assert token.seed is None, f"{token.serial} has a seed, its activation unused"


def _issue(rig: Rig, authorisation_id: str) -> Any:
    return rig.station().IssueToken(
        enrolment_pb2.IssueTokenRequest(
            authorisation_id=authorisation_id,
            params=common_pb2.OtpParameters(mode=common_pb2.OTP_MODE_HOTP),
        ),
        timeout=30,
    )


def _activate_and_prove(rig: Rig, activation_code: str) -> None:
    phone = TokenApp()
    phone.complete(
        rig.device().ActivateWithCode(
            device_pb2.ActivateWithCodeRequest(
                activation_code=activation_code, device_public_key=phone.public_key
            ),
            timeout=30,
        )
    )
    proved = rig.device().ProvePossession(
        device_pb2.ProvePossessionRequest(serial=phone.serial, code=phone.counter_code(0)),
        timeout=30,
    )
    assert proved.result == common_pb2.VERIFY_RESULT_OK


# --- the use cases -------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_issuance_crash_leaves_the_authorisation_unused_or_used_by_a_complete_token(
    rig: Rig, point: str
) -> None:
    """Issuance: authorisation consumed, superseded pending tokens revoked (audited), token,
    activation, token_created: one commit."""
    rig.issue_with_code()  # a pending token the new one supersedes
    crashed = rig.grant()
    rig.serve(crash_at=f"issuance.{point}")
    dies(lambda: _issue(rig, crashed))
    rig.died_at_write_point()

    rig.serve()
    store = open_store(rig.store_url)
    try:
        pending = [t for t in store.tokens_of(CF) if t.state is TokenState.PENDING]
        assert len(pending) == 1  # the earlier one, or the new one that superseded it
        committed = point == "after_commit"
        found = store.get_authorisation(crashed)
        assert found is not None and (found.used_at is not None) is committed
        if committed:  # the answer was lost: the same request is refused, a new one succeeds
            refused_as_used(lambda: _issue(rig, crashed))
            rig.grant()
        issued = _issue(rig, rig.authorisations[-1])
        _activate_and_prove(rig, issued.activation_code)
        check_invariants(store, rig.authorisations)
        assert [t for t in store.tokens_of(CF) if t.state is TokenState.PENDING] == []
    finally:
        store.close()
    rig.audit_intact()


@STORAGES
@pytest.mark.parametrize("point", POINTS)
def test_activation_crash_leaves_the_activation_unused_or_the_token_with_its_seed(
    rig: Rig, point: str
) -> None:
    """Activation: the activation marked used, the token's seed written, device_activated:
    one commit; the derived seed is destroyed when the commit does not happen."""
    activation_code = rig.issue_with_code()
    rig.serve(crash_at=f"activation.{point}")
    phone = TokenApp()
    request = device_pb2.ActivateWithCodeRequest(
        activation_code=activation_code, device_public_key=phone.public_key
    )
    dies(lambda: rig.device().ActivateWithCode(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    rig.check_no_orphan_seed(crashed_before_commit=point == "before_commit")
    store = open_store(rig.store_url)
    try:
        (activation,) = store.activations_of(CF)
        (token,) = store.tokens_of(CF)
        committed = point == "after_commit"
        assert (activation.used_at is not None) is committed
        assert (token.seed is not None) is committed
        if committed:  # the phone lost the HSM's point: it starts again with a new token
            refused_as_used(lambda: rig.device().ActivateWithCode(request, timeout=30))
            activation_code = _issue(rig, rig.grant()).activation_code
        _activate_and_prove(rig, activation_code)
        check_invariants(store, rig.authorisations)
    finally:
        store.close()
    rig.audit_intact()


@STORAGES
@pytest.mark.parametrize("point", POINTS)
def test_grid_card_crash_leaves_one_active_card_and_the_authorisation_consistent(
    rig: Rig, point: str
) -> None:
    """Security Card replacement: authorisation consumed, the old card revoked, the new card,
    grid_card_revoked and grid_card_issued: one commit (the old key destroyed after it)."""
    with in_process(rig.config) as app:
        app.store.upsert_citizen(citizen(CF))
        issue_grid_card(app, TEST_ACTOR, rig.card_authorisation(app))
        crashed = rig.card_authorisation(app)
    request = grid_pb2.IssueGridCardRequest(authorisation_id=crashed)
    rig.serve(crash_at=f"grid_card_issue.{point}")
    dies(lambda: rig.grid().IssueGridCard(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    rig.check_no_orphan_seed(crashed_before_commit=point == "before_commit")
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        found = store.get_authorisation(crashed)
        assert found is not None and (found.used_at is not None) is committed
        cards = store.grid_cards_of(CF)
        assert len(cards) == (2 if committed else 1)
        assert [c.state for c in cards].count(GridCardState.ACTIVE) == 1
        audited = [e.action for e in store.audit_entries()]
        assert audited.count("grid_card_issued") == len(cards)
        assert audited.count("grid_card_revoked") == len(cards) - 1
    if committed:
        refused_as_used(lambda: rig.grid().IssueGridCard(request, timeout=30))
        with in_process(rig.config) as app:
            request = grid_pb2.IssueGridCardRequest(authorisation_id=rig.card_authorisation(app))
    rig.grid().IssueGridCard(request, timeout=30)
    with open_store_at(rig.store_url) as store:
        states = [c.state for c in store.grid_cards_of(CF)]
        assert states.count(GridCardState.ACTIVE) == 1
    rig.audit_intact()


@pytest.mark.parametrize("point", POINTS)
def test_fob_assignment_crash_leaves_the_fob_in_inventory_or_assigned_and_proved(
    rig: Rig, point: str
) -> None:
    """Fob assignment with its first code: authorisation consumed, the fob assigned,
    fob_assigned, the first code's proof (the fob ACTIVE, token_active): one commit."""
    (fob,) = batch(1, first=7001)
    with in_process(rig.config) as app:
        import_pskc(app, OPERATOR, pskc_document([fob], psk=PSK), psk=PSK)
    crashed = rig.grant()
    request = enrolment_pb2.AssignFobRequest(
        authorisation_id=crashed, serial=fob.serial, first_code=fob.press()
    )
    rig.serve(crash_at=f"fob_assignment.{point}")
    dies(lambda: rig.station().AssignFob(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        found = store.get_authorisation(crashed)
        assert found is not None and (found.used_at is not None) is committed
        token = store.get_token(fob.serial)
        assert token is not None
        expected = (CF, TokenState.ACTIVE) if committed else ("", TokenState.SUSPENDED)
        assert (token.codice_fiscale, token.state) == expected
        audited = {(e.action, e.subject) for e in store.audit_entries()}
        assert (("fob_assigned", fob.serial) in audited) is committed
        assert (("token_active", fob.serial) in audited) is committed
    if committed:  # the answer was lost: the fob is the citizen's, active
        refused_as_used(lambda: rig.station().AssignFob(request, timeout=30))
    else:
        answer = rig.station().AssignFob(request, timeout=30)
        assert answer.proof.result == common_pb2.VERIFY_RESULT_OK
    rig.audit_intact()


@pytest.mark.parametrize("point", POINTS)
def test_sms_replacement_crash_uses_the_code_only_with_the_authorisation_granted(
    rig: Rig, point: str
) -> None:
    """SMS replacement: the code marked used, the authorisation granted and audited: one
    commit."""
    with in_process(rig.config) as app:
        _, text = oob.new_code(app, CF, OobPurpose.DEVICE_REPLACEMENT)
    request = enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=CF, code=text)
    rig.serve(crash_at=f"sms_replacement.{point}")
    dies(lambda: rig.station().AuthoriseWithSmsCode(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        code = store.current_oob_code(CF, OobPurpose.DEVICE_REPLACEMENT)
        assert code is not None and (code.used_at is not None) is committed
        granted = [e for e in store.audit_entries() if e.action == "authorised"]
        assert len(granted) == int(committed)
        for entry in granted:
            assert store.get_authorisation(str(entry.details["authorisation"])) is not None
    if committed:  # the code is spent: a new one is asked for
        refused_as_used(lambda: rig.station().AuthoriseWithSmsCode(request, timeout=30))
        with in_process(rig.config) as app:
            _, text = oob.new_code(app, CF, OobPurpose.DEVICE_REPLACEMENT)
        request = enrolment_pb2.AuthoriseWithSmsCodeRequest(codice_fiscale=CF, code=text)
    assert rig.station().AuthoriseWithSmsCode(request, timeout=30).authorisation_id
    rig.audit_intact()


@STORAGES
@pytest.mark.parametrize("point", POINTS)
def test_pskc_import_crash_leaves_the_file_wholly_in_or_wholly_out(rig: Rig, point: str) -> None:
    """A PSKC file: every fob and fobs_imported: one commit."""
    fobs = batch(5, first=8001)
    request = admin_pb2.ImportPskcRequest(pskc=pskc_document(fobs, psk=PSK), pre_shared_key=PSK)
    rig.serve(crash_at=f"fob_import.{point}")
    dies(lambda: rig.admin().ImportPskc(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    rig.check_no_orphan_seed(crashed_before_commit=point == "before_commit")
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        found = [store.get_token(f.serial) is not None for f in fobs]
        assert found == [committed] * len(fobs)
        audited = [e.action for e in store.audit_entries()]
        assert audited.count("fobs_imported") == int(committed)
    if committed:  # the file is in: importing it again is refused, nothing doubles
        with pytest.raises(grpc.RpcError) as refused:
            rig.admin().ImportPskc(request, timeout=30)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    else:
        assert len(rig.admin().ImportPskc(request, timeout=30).tokens) == len(fobs)
    rig.audit_intact()


@pytest.mark.parametrize("point", POINTS)
def test_proof_crash_turns_the_new_phone_active_only_with_the_old_one_revoked(
    rig: Rig, point: str
) -> None:
    """Proof of possession: the new phone ACTIVE and the citizen's old phone REVOKED (one
    conditional write of both), token_active and token_revoked: one commit."""
    old = activated_phone(rig)
    with in_process(rig.config) as app:
        assert prove_possession(app, DEVICE, old.serial, old.counter_code(0)).ok
    new = activated_phone(rig)
    request = device_pb2.ProvePossessionRequest(serial=new.serial, code=new.counter_code(0))
    rig.serve(crash_at=f"proof_of_possession.{point}")
    dies(lambda: rig.device().ProvePossession(request, timeout=30))
    rig.died_at_write_point()

    rig.serve()
    committed = point == "after_commit"
    with open_store_at(rig.store_url) as store:
        states = [store.get_token(s) for s in (old.serial, new.serial)]
        expected = (
            [TokenState.REVOKED, TokenState.ACTIVE]
            if committed
            else [TokenState.ACTIVE, TokenState.PENDING]
        )
        assert [t.state if t else None for t in states] == expected
        audited = {(e.action, e.subject) for e in store.audit_entries()}
        assert (("token_active", new.serial) in audited) is committed
        assert (("token_revoked", old.serial) in audited) is committed
        check_invariants(store, rig.authorisations)
    again = rig.device().ProvePossession(request, timeout=30).result
    assert again == (
        common_pb2.VERIFY_RESULT_REPLAYED if committed else common_pb2.VERIFY_RESULT_OK
    )
    rig.audit_intact()
