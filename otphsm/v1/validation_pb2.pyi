from google.api import annotations_pb2 as _annotations_pb2
from otphsm.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyRequest(_message.Message):
    __slots__ = ("serial", "codice_fiscale", "code", "origin")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    serial: str
    codice_fiscale: str
    code: str
    origin: str
    def __init__(self, serial: _Optional[str] = ..., codice_fiscale: _Optional[str] = ..., code: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class TestDeviceRequest(_message.Message):
    __slots__ = ("serial", "code", "origin")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    serial: str
    code: str
    origin: str
    def __init__(self, serial: _Optional[str] = ..., code: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class ResyncRequest(_message.Message):
    __slots__ = ("serial", "first_code", "second_code", "origin")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    FIRST_CODE_FIELD_NUMBER: _ClassVar[int]
    SECOND_CODE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    serial: str
    first_code: str
    second_code: str
    origin: str
    def __init__(self, serial: _Optional[str] = ..., first_code: _Optional[str] = ..., second_code: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...
