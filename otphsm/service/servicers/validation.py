"""ValidationService: relying parties check codes. A wrong code is a result, not an error."""

from __future__ import annotations

import grpc

from otphsm.core.app import validation
from otphsm.core.app.context import App
from otphsm.core.errors import InvalidInput
from otphsm.service import convert
from otphsm.service.interceptor import current_actor
from otphsm.v1 import common_pb2, validation_pb2_grpc
from otphsm.v1 import validation_pb2 as pb


class ValidationServicer(validation_pb2_grpc.ValidationServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    def Verify(
        self, request: pb.VerifyRequest, context: grpc.ServicerContext
    ) -> common_pb2.VerifyResponse:
        subject = request.WhichOneof("subject")
        if subject == "serial":
            outcome = validation.verify_serial(
                self._app, current_actor(), request.serial, request.code, request.origin
            )
        elif subject == "codice_fiscale":
            cf = convert.codice_fiscale(request.codice_fiscale)
            outcome = validation.verify_citizen(
                self._app, current_actor(), cf, request.code, request.origin
            )
        else:
            raise InvalidInput("set serial or codice_fiscale", field="serial")
        return convert.verify_response(outcome)

    def TestDevice(
        self, request: pb.TestDeviceRequest, context: grpc.ServicerContext
    ) -> common_pb2.VerifyResponse:
        outcome = validation.check_device(
            self._app, current_actor(), request.serial, request.code, request.origin
        )
        return convert.verify_response(outcome)

    def Resync(
        self, request: pb.ResyncRequest, context: grpc.ServicerContext
    ) -> common_pb2.VerifyResponse:
        outcome = validation.resync_serial(
            self._app,
            current_actor(),
            request.serial,
            request.first_code,
            request.second_code,
            request.origin,
        )
        return convert.verify_response(outcome)
