from google.api import annotations_pb2 as _annotations_pb2
from otphsm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_CHANNEL_UNSPECIFIED: _ClassVar[DeliveryChannel]
    DELIVERY_CHANNEL_SMS: _ClassVar[DeliveryChannel]
    DELIVERY_CHANNEL_PUSH: _ClassVar[DeliveryChannel]
DELIVERY_CHANNEL_UNSPECIFIED: DeliveryChannel
DELIVERY_CHANNEL_SMS: DeliveryChannel
DELIVERY_CHANNEL_PUSH: DeliveryChannel

class RequestLoginCodeRequest(_message.Message):
    __slots__ = ("codice_fiscale", "channel")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    channel: DeliveryChannel
    def __init__(self, codice_fiscale: _Optional[str] = ..., channel: _Optional[_Union[DeliveryChannel, str]] = ...) -> None: ...

class RequestLoginCodeResponse(_message.Message):
    __slots__ = ("expires_at", "channel", "prefix_required", "device_serial")
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PREFIX_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    expires_at: int
    channel: DeliveryChannel
    prefix_required: bool
    device_serial: str
    def __init__(self, expires_at: _Optional[int] = ..., channel: _Optional[_Union[DeliveryChannel, str]] = ..., prefix_required: _Optional[bool] = ..., device_serial: _Optional[str] = ...) -> None: ...

class VerifyLoginCodeRequest(_message.Message):
    __slots__ = ("codice_fiscale", "code", "origin")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    code: str
    origin: str
    def __init__(self, codice_fiscale: _Optional[str] = ..., code: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class SetCodePrefixRequest(_message.Message):
    __slots__ = ("codice_fiscale", "prefix")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    prefix: str
    def __init__(self, codice_fiscale: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class SetCodePrefixResponse(_message.Message):
    __slots__ = ("prefix_set",)
    PREFIX_SET_FIELD_NUMBER: _ClassVar[int]
    prefix_set: bool
    def __init__(self, prefix_set: _Optional[bool] = ...) -> None: ...
