from otphsm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActivationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_METHOD_UNSPECIFIED: _ClassVar[ActivationMethod]
    ACTIVATION_METHOD_CODE: _ClassVar[ActivationMethod]
    ACTIVATION_METHOD_TEMPORARY_SECRET: _ClassVar[ActivationMethod]
    ACTIVATION_METHOD_OTPAUTH: _ClassVar[ActivationMethod]
ACTIVATION_METHOD_UNSPECIFIED: ActivationMethod
ACTIVATION_METHOD_CODE: ActivationMethod
ACTIVATION_METHOD_TEMPORARY_SECRET: ActivationMethod
ACTIVATION_METHOD_OTPAUTH: ActivationMethod

class GetChallengeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetChallengeResponse(_message.Message):
    __slots__ = ("challenge_id", "nonce", "expires_at")
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    challenge_id: str
    nonce: bytes
    expires_at: int
    def __init__(self, challenge_id: _Optional[str] = ..., nonce: _Optional[bytes] = ..., expires_at: _Optional[int] = ...) -> None: ...

class AuthoriseWithCardRequest(_message.Message):
    __slots__ = ("challenge_id", "certificate_der", "card_id", "codice_fiscale", "signature")
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_DER_FIELD_NUMBER: _ClassVar[int]
    CARD_ID_FIELD_NUMBER: _ClassVar[int]
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    challenge_id: str
    certificate_der: bytes
    card_id: str
    codice_fiscale: str
    signature: bytes
    def __init__(self, challenge_id: _Optional[str] = ..., certificate_der: _Optional[bytes] = ..., card_id: _Optional[str] = ..., codice_fiscale: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class AuthorisationResponse(_message.Message):
    __slots__ = ("authorisation_id", "expires_at", "citizen")
    AUTHORISATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CITIZEN_FIELD_NUMBER: _ClassVar[int]
    authorisation_id: str
    expires_at: int
    citizen: _common_pb2.Citizen
    def __init__(self, authorisation_id: _Optional[str] = ..., expires_at: _Optional[int] = ..., citizen: _Optional[_Union[_common_pb2.Citizen, _Mapping]] = ...) -> None: ...

class AuthoriseWithLocalCardRequest(_message.Message):
    __slots__ = ("reader", "pin")
    READER_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    reader: str
    pin: str
    def __init__(self, reader: _Optional[str] = ..., pin: _Optional[str] = ...) -> None: ...

class WatchCardsRequest(_message.Message):
    __slots__ = ("reader", "max_seconds", "include_present")
    READER_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PRESENT_FIELD_NUMBER: _ClassVar[int]
    reader: str
    max_seconds: int
    include_present: bool
    def __init__(self, reader: _Optional[str] = ..., max_seconds: _Optional[int] = ..., include_present: _Optional[bool] = ...) -> None: ...

class CardEvent(_message.Message):
    __slots__ = ("kind", "reader", "atr")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[CardEvent.Kind]
        KIND_INSERTED: _ClassVar[CardEvent.Kind]
        KIND_REMOVED: _ClassVar[CardEvent.Kind]
    KIND_UNSPECIFIED: CardEvent.Kind
    KIND_INSERTED: CardEvent.Kind
    KIND_REMOVED: CardEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    READER_FIELD_NUMBER: _ClassVar[int]
    ATR_FIELD_NUMBER: _ClassVar[int]
    kind: CardEvent.Kind
    reader: str
    atr: bytes
    def __init__(self, kind: _Optional[_Union[CardEvent.Kind, str]] = ..., reader: _Optional[str] = ..., atr: _Optional[bytes] = ...) -> None: ...

class SetPhoneNumberRequest(_message.Message):
    __slots__ = ("codice_fiscale", "phone_number")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    phone_number: str
    def __init__(self, codice_fiscale: _Optional[str] = ..., phone_number: _Optional[str] = ...) -> None: ...

class SetPhoneNumberResponse(_message.Message):
    __slots__ = ("citizen",)
    CITIZEN_FIELD_NUMBER: _ClassVar[int]
    citizen: _common_pb2.Citizen
    def __init__(self, citizen: _Optional[_Union[_common_pb2.Citizen, _Mapping]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("authorisation_id", "method", "params", "temporary_secret")
    AUTHORISATION_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TEMPORARY_SECRET_FIELD_NUMBER: _ClassVar[int]
    authorisation_id: str
    method: ActivationMethod
    params: _common_pb2.OtpParameters
    temporary_secret: str
    def __init__(self, authorisation_id: _Optional[str] = ..., method: _Optional[_Union[ActivationMethod, str]] = ..., params: _Optional[_Union[_common_pb2.OtpParameters, _Mapping]] = ..., temporary_secret: _Optional[str] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("token", "activation_expires_at", "activation_code", "otpauth_uri", "qr_png", "qr_text")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_CODE_FIELD_NUMBER: _ClassVar[int]
    OTPAUTH_URI_FIELD_NUMBER: _ClassVar[int]
    QR_PNG_FIELD_NUMBER: _ClassVar[int]
    QR_TEXT_FIELD_NUMBER: _ClassVar[int]
    token: _common_pb2.Token
    activation_expires_at: int
    activation_code: str
    otpauth_uri: str
    qr_png: bytes
    qr_text: str
    def __init__(self, token: _Optional[_Union[_common_pb2.Token, _Mapping]] = ..., activation_expires_at: _Optional[int] = ..., activation_code: _Optional[str] = ..., otpauth_uri: _Optional[str] = ..., qr_png: _Optional[bytes] = ..., qr_text: _Optional[str] = ...) -> None: ...

class SendReplacementCodeRequest(_message.Message):
    __slots__ = ("codice_fiscale",)
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    def __init__(self, codice_fiscale: _Optional[str] = ...) -> None: ...

class SendReplacementCodeResponse(_message.Message):
    __slots__ = ("expires_at",)
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    expires_at: int
    def __init__(self, expires_at: _Optional[int] = ...) -> None: ...

class AuthoriseWithSmsCodeRequest(_message.Message):
    __slots__ = ("codice_fiscale", "code")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    code: str
    def __init__(self, codice_fiscale: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class AssignFobRequest(_message.Message):
    __slots__ = ("authorisation_id", "serial", "first_code")
    AUTHORISATION_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    FIRST_CODE_FIELD_NUMBER: _ClassVar[int]
    authorisation_id: str
    serial: str
    first_code: str
    def __init__(self, authorisation_id: _Optional[str] = ..., serial: _Optional[str] = ..., first_code: _Optional[str] = ...) -> None: ...

class AssignFobResponse(_message.Message):
    __slots__ = ("token", "proof")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    token: _common_pb2.Token
    proof: _common_pb2.VerifyResponse
    def __init__(self, token: _Optional[_Union[_common_pb2.Token, _Mapping]] = ..., proof: _Optional[_Union[_common_pb2.VerifyResponse, _Mapping]] = ...) -> None: ...
