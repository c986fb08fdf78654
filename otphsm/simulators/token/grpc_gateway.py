"""`DeviceGateway` over gRPC: DeviceService through an mTLS client holding the `device` role."""

from __future__ import annotations

from otphsm.client import Client
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.core.verification import VerifyResult
from otphsm.simulators.token.device_gateway import DeviceActivation, Proof
from otphsm.v1 import common_pb2, device_pb2, device_pb2_grpc

_ALGORITHMS = {
    common_pb2.HASH_ALGORITHM_SHA256: HashAlgorithm.SHA256,
    common_pb2.HASH_ALGORITHM_SHA512: HashAlgorithm.SHA512,
}


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
    name = common_pb2.VerifyResult.Name(response.result).removeprefix("VERIFY_RESULT_")
    try:
        result = VerifyResult(name.lower())
    except ValueError:
        result = VerifyResult.WRONG_CODE
    return Proof(result, response.retry_after_seconds)


def params_from(message: common_pb2.OtpParameters) -> OtpParameters:
    mode = OtpMode.HOTP if message.mode == common_pb2.OTP_MODE_HOTP else OtpMode.TOTP
    algorithm = _ALGORITHMS.get(message.algorithm, HashAlgorithm.SHA1)
    return OtpParameters(mode, algorithm, message.digits or 6, message.period_seconds or 30)


def _activation(response: device_pb2.ActivationResponse) -> DeviceActivation:
    return DeviceActivation(
        serial=response.serial,
        server_public_key=bytes(response.server_public_key),
        params=params_from(response.params),
        issuer=response.issuer,
        codice_fiscale=response.codice_fiscale,
    )
