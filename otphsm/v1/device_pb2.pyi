from otphsm.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActivateWithCodeRequest(_message.Message):
    __slots__ = ("activation_code", "device_public_key")
    ACTIVATION_CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    activation_code: str
    device_public_key: bytes
    def __init__(self, activation_code: _Optional[str] = ..., device_public_key: _Optional[bytes] = ...) -> None: ...

class ActivateWithTemporarySecretRequest(_message.Message):
    __slots__ = ("codice_fiscale", "temporary_secret", "device_public_key")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    TEMPORARY_SECRET_FIELD_NUMBER: _ClassVar[int]
    DEVICE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    temporary_secret: str
    device_public_key: bytes
    def __init__(self, codice_fiscale: _Optional[str] = ..., temporary_secret: _Optional[str] = ..., device_public_key: _Optional[bytes] = ...) -> None: ...

class ActivationResponse(_message.Message):
    __slots__ = ("serial", "server_public_key", "params", "issuer", "codice_fiscale")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    SERVER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    serial: str
    server_public_key: bytes
    params: _common_pb2.OtpParameters
    issuer: str
    codice_fiscale: str
    def __init__(self, serial: _Optional[str] = ..., server_public_key: _Optional[bytes] = ..., params: _Optional[_Union[_common_pb2.OtpParameters, _Mapping]] = ..., issuer: _Optional[str] = ..., codice_fiscale: _Optional[str] = ...) -> None: ...

class ProvePossessionRequest(_message.Message):
    __slots__ = ("serial", "code")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    serial: str
    code: str
    def __init__(self, serial: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...
