"""The emulated app's way to the service: the DeviceService calls it makes, as a small port.
Only the phone's public key, its activation material and a code travel; the seed never does.
The gRPC implementation is `grpc_gateway.GrpcDeviceGateway`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from otphsm.core.tokens import OtpParameters
from otphsm.core.verification import VerifyResult


@dataclass(frozen=True, slots=True)
class DeviceActivation:
    serial: str
    server_public_key: bytes
    params: OtpParameters
    issuer: str
    codice_fiscale: str


@dataclass(frozen=True, slots=True)
class Proof:
    result: VerifyResult
    retry_after: int = 0

    @property
    def ok(self) -> bool:
        return self.result is VerifyResult.OK


class DeviceGateway(Protocol):
    def activate_with_code(self, code: str, public_key: bytes) -> DeviceActivation: ...

    def activate_with_temporary_secret(
        self, codice_fiscale: str, secret: str, public_key: bytes
    ) -> DeviceActivation: ...

    def prove_possession(self, serial: str, code: str) -> Proof: ...
