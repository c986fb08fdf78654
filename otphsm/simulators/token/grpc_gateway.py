"""`DeviceGateway` over gRPC: DeviceService through an mTLS client holding the `device` role."""

from __future__ import annotations

from otphsm.client import Client, wire
from otphsm.client.results import otp_parameters
from otphsm.simulators.token.device_gateway import DeviceActivation, Proof
from otphsm.v1 import common_pb2, device_pb2, device_pb2_grpc


class GrpcDeviceGateway:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = device_pb2_grpc.DeviceServiceStub(client.channel)

    def activate_with_code(self, code: str, public_key: bytes) -> DeviceActivation:
        request = device_pb2.ActivateWithCodeRequest(
            activation_code=code, device_public_key=public_key
        )
        return _activation(self._client.call(self._stub.ActivateWithCode, request))

    def activate_with_temporary_secret(
        self, codice_fiscale: str, secret: str, public_key: bytes
    ) -> DeviceActivation:
        request = device_pb2.ActivateWithTemporarySecretRequest(
            codice_fiscale=codice_fiscale, temporary_secret=secret, device_public_key=public_key
        )
        return _activation(self._client.call(self._stub.ActivateWithTemporarySecret, request))

    def prove_possession(self, serial: str, code: str) -> Proof:
        request = device_pb2.ProvePossessionRequest(serial=serial, code=code)
        return proof_from(self._client.call(self._stub.ProvePossession, request))


def proof_from(response: common_pb2.VerifyResponse) -> Proof:
    """The domain result of a VerifyResponse (an unknown result counts as a wrong code)."""
    return Proof(wire.verify_result(response.result), response.retry_after_seconds)


def _activation(response: device_pb2.ActivationResponse) -> DeviceActivation:
    return DeviceActivation(
        serial=response.serial,
        server_public_key=bytes(response.server_public_key),
        params=otp_parameters(response.params),
        issuer=response.issuer,
        codice_fiscale=response.codice_fiscale,
    )
