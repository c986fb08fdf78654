"""GridCardService: stations issue Security Cards (the PDF, once); relying parties ask for and
check two cells; operators revoke. A wrong answer is a result, not an error."""

from __future__ import annotations

import grpc

from otphsm.core.app import grid
from otphsm.core.app.context import App
from otphsm.core.errors import InvalidInput
from otphsm.core.records import GridCard, GridCardState
from otphsm.service import convert
from otphsm.service.grid_pdf import CardPrint, render_grid_card
from otphsm.service.interceptor import current_actor
from otphsm.v1 import common_pb2, grid_pb2_grpc
from otphsm.v1 import grid_pb2 as pb

MAX_VALUE_LENGTH = 16

_STATE_OUT = {
    GridCardState.ACTIVE: pb.GRID_CARD_STATE_ACTIVE,
    GridCardState.REVOKED: pb.GRID_CARD_STATE_REVOKED,
}


class GridCardServicer(grid_pb2_grpc.GridCardServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    def IssueGridCard(
        self, request: pb.IssueGridCardRequest, context: grpc.ServicerContext
    ) -> pb.IssueGridCardResponse:
        issued = grid.issue_grid_card(
            self._app,
            current_actor(),
            convert.record_id(request.authorisation_id, "authorisation_id"),
        )
        holder = f"{issued.holder.given_name} {issued.holder.surname}".strip()
        pdf = render_grid_card(
            CardPrint(
                issuer=self._app.policy.issuer,
                serial=issued.card.serial,
                holder=holder or issued.holder.codice_fiscale,
                issued_at=issued.card.created_at,
                values=issued.values,
            )
        )
        return pb.IssueGridCardResponse(
            card=_card_message(issued.card), pdf=pdf, replaced_serials=issued.replaced
        )

    def GridChallenge(
        self, request: pb.GridChallengeRequest, context: grpc.ServicerContext
    ) -> pb.GridChallengeResponse:
        challenge = grid.grid_challenge(
            self._app,
            current_actor(),
            convert.codice_fiscale(request.codice_fiscale),
            request.origin,
        )
        first, second = challenge.cells
        return pb.GridChallengeResponse(
            serial=challenge.serial,
            first_cell=first,
            second_cell=second,
            expires_at=challenge.expires_at,
        )

    def VerifyGridAnswer(
        self, request: pb.VerifyGridAnswerRequest, context: grpc.ServicerContext
    ) -> common_pb2.VerifyResponse:
        for value in (request.first_value, request.second_value):
            if len(value) > MAX_VALUE_LENGTH:
                raise InvalidInput(
                    f"a cell value is at most {MAX_VALUE_LENGTH} characters",
                    field="first_value" if value is request.first_value else "second_value",
                )
        outcome = grid.verify_grid_answer(
            self._app,
            current_actor(),
            convert.codice_fiscale(request.codice_fiscale),
            request.first_value,
            request.second_value,
            request.origin,
        )
        return convert.verify_response(outcome)

    def RevokeGridCard(
        self, request: pb.RevokeGridCardRequest, context: grpc.ServicerContext
    ) -> pb.RevokeGridCardResponse:
        card = grid.revoke_grid_card(self._app, current_actor(), request.serial, request.reason)
        return pb.RevokeGridCardResponse(card=_card_message(card))


def _card_message(card: GridCard) -> pb.GridCard:
    return pb.GridCard(
        serial=card.serial,
        codice_fiscale=card.codice_fiscale,
        state=_STATE_OUT[card.state],
        cells=card.cells,
        cell_digits=card.cell_digits,
        created_at=card.created_at,
        revoked_at=card.revoked_at or 0,
        locked_until=card.locked_until,
        failures=card.failures,
    )
