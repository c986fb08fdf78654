"""DeviceService: the token app activates (secure ECDH) and proves possession."""

from __future__ import annotations

import grpc

from otphsm.core.app import activation, validation
from otphsm.core.app.activation import ActivatedDevice
from otphsm.core.app.context import App
from otphsm.service import convert
from otphsm.service.interceptor import current_actor
from otphsm.v1 import common_pb2, device_pb2_grpc
from otphsm.v1 import device_pb2 as pb


class DeviceServicer(device_pb2_grpc.DeviceServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    def ActivateWithCode(
        self, request: pb.ActivateWithCodeRequest, context: grpc.ServicerContext
    ) -> pb.ActivationResponse:
        device = activation.activate_with_code(
            self._app,
            current_actor(),
            convert.activation_code(request.activation_code),
            convert.device_public_key(request.device_public_key),
        )
        return _activated(device)

    def ActivateWithTemporarySecret(
        self, request: pb.ActivateWithTemporarySecretRequest, context: grpc.ServicerContext
    ) -> pb.ActivationResponse:
        device = activation.activate_with_temporary_secret(
            self._app,
            current_actor(),
            convert.codice_fiscale(request.codice_fiscale),
            request.temporary_secret,
            convert.device_public_key(request.device_public_key),
        )
        return _activated(device)

    def ProvePossession(
        self, request: pb.ProvePossessionRequest, context: grpc.ServicerContext
    ) -> common_pb2.VerifyResponse:
        outcome = validation.prove_possession(
            self._app, current_actor(), request.serial, request.code
        )
        return convert.verify_response(outcome)


def _activated(device: ActivatedDevice) -> pb.ActivationResponse:
    return pb.ActivationResponse(
        serial=device.token.serial,
        server_public_key=device.server_public_point,
        params=convert.params_message(device.token.params),
        issuer=device.issuer,
        codice_fiscale=device.token.codice_fiscale,
    )
