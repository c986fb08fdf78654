"""OobService: relying parties ask for and check out-of-band login codes; stations record the
citizen's personal part. A wrong code is a result, not an error."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from otphsm.core.app import login
from otphsm.core.app.context import App
from otphsm.core.app.login import Channel
from otphsm.core.errors import InvalidInput
from otphsm.service import convert
from otphsm.service.interceptor import current_actor
from otphsm.v1 import common_pb2, oob_pb2_grpc
from otphsm.v1 import oob_pb2 as pb

MAX_CODE_LENGTH = 32

_CHANNELS: Mapping[int, Channel] = {
    pb.DELIVERY_CHANNEL_UNSPECIFIED: Channel.SMS,
    pb.DELIVERY_CHANNEL_SMS: Channel.SMS,
    pb.DELIVERY_CHANNEL_PUSH: Channel.PUSH,
}
_CHANNEL_OUT = {Channel.SMS: pb.DELIVERY_CHANNEL_SMS, Channel.PUSH: pb.DELIVERY_CHANNEL_PUSH}


class OobServicer(oob_pb2_grpc.OobServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    def RequestLoginCode(
        self, request: pb.RequestLoginCodeRequest, context: grpc.ServicerContext
    ) -> pb.RequestLoginCodeResponse:
        channel = _CHANNELS.get(request.channel)
        if channel is None:
            raise InvalidInput("channel: not a known value", field="channel")
        sent = login.request_login_code(
            self._app, current_actor(), convert.codice_fiscale(request.codice_fiscale), channel
        )
        return pb.RequestLoginCodeResponse(
            expires_at=sent.expires_at,
            channel=_CHANNEL_OUT[sent.channel],
            prefix_required=sent.prefix_required,
            device_serial=sent.device_serial,
        )

    def VerifyLoginCode(
        self, request: pb.VerifyLoginCodeRequest, context: grpc.ServicerContext
    ) -> common_pb2.VerifyResponse:
        if len(request.code) > MAX_CODE_LENGTH:
            raise InvalidInput(f"code is at most {MAX_CODE_LENGTH} characters", field="code")
        outcome = login.verify_login_code(
            self._app,
            current_actor(),
            convert.codice_fiscale(request.codice_fiscale),
            request.code,
            request.origin,
        )
        return convert.verify_response(outcome)

    def SetCodePrefix(
        self, request: pb.SetCodePrefixRequest, context: grpc.ServicerContext
    ) -> pb.SetCodePrefixResponse:
        citizen = login.set_code_prefix(
            self._app,
            current_actor(),
            convert.codice_fiscale(request.codice_fiscale),
            request.prefix,
        )
        return pb.SetCodePrefixResponse(prefix_set=citizen.code_prefix_mac is not None)
