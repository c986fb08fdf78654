from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OtpMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OTP_MODE_UNSPECIFIED: _ClassVar[OtpMode]
    OTP_MODE_TOTP: _ClassVar[OtpMode]
    OTP_MODE_HOTP: _ClassVar[OtpMode]

class HashAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HASH_ALGORITHM_UNSPECIFIED: _ClassVar[HashAlgorithm]
    HASH_ALGORITHM_SHA1: _ClassVar[HashAlgorithm]
    HASH_ALGORITHM_SHA256: _ClassVar[HashAlgorithm]
    HASH_ALGORITHM_SHA512: _ClassVar[HashAlgorithm]

class TokenKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_KIND_UNSPECIFIED: _ClassVar[TokenKind]
    TOKEN_KIND_MOBILE: _ClassVar[TokenKind]
    TOKEN_KIND_PHYSICAL: _ClassVar[TokenKind]

class TokenState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_STATE_UNSPECIFIED: _ClassVar[TokenState]
    TOKEN_STATE_PENDING: _ClassVar[TokenState]
    TOKEN_STATE_ACTIVE: _ClassVar[TokenState]
    TOKEN_STATE_SUSPENDED: _ClassVar[TokenState]
    TOKEN_STATE_REVOKED: _ClassVar[TokenState]

class VerifyResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_RESULT_UNSPECIFIED: _ClassVar[VerifyResult]
    VERIFY_RESULT_OK: _ClassVar[VerifyResult]
    VERIFY_RESULT_WRONG_CODE: _ClassVar[VerifyResult]
    VERIFY_RESULT_REPLAYED: _ClassVar[VerifyResult]
    VERIFY_RESULT_EXPIRED: _ClassVar[VerifyResult]
    VERIFY_RESULT_LOCKED: _ClassVar[VerifyResult]
    VERIFY_RESULT_NOT_ACTIVE: _ClassVar[VerifyResult]
    VERIFY_RESULT_REVOKED: _ClassVar[VerifyResult]
OTP_MODE_UNSPECIFIED: OtpMode
OTP_MODE_TOTP: OtpMode
OTP_MODE_HOTP: OtpMode
HASH_ALGORITHM_UNSPECIFIED: HashAlgorithm
HASH_ALGORITHM_SHA1: HashAlgorithm
HASH_ALGORITHM_SHA256: HashAlgorithm
HASH_ALGORITHM_SHA512: HashAlgorithm
TOKEN_KIND_UNSPECIFIED: TokenKind
TOKEN_KIND_MOBILE: TokenKind
TOKEN_KIND_PHYSICAL: TokenKind
TOKEN_STATE_UNSPECIFIED: TokenState
TOKEN_STATE_PENDING: TokenState
TOKEN_STATE_ACTIVE: TokenState
TOKEN_STATE_SUSPENDED: TokenState
TOKEN_STATE_REVOKED: TokenState
VERIFY_RESULT_UNSPECIFIED: VerifyResult
VERIFY_RESULT_OK: VerifyResult
VERIFY_RESULT_WRONG_CODE: VerifyResult
VERIFY_RESULT_REPLAYED: VerifyResult
VERIFY_RESULT_EXPIRED: VerifyResult
VERIFY_RESULT_LOCKED: VerifyResult
VERIFY_RESULT_NOT_ACTIVE: VerifyResult
VERIFY_RESULT_REVOKED: VerifyResult

class OtpParameters(_message.Message):
    __slots__ = ("mode", "algorithm", "digits", "period_seconds")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    mode: OtpMode
    algorithm: HashAlgorithm
    digits: int
    period_seconds: int
    def __init__(self, mode: _Optional[_Union[OtpMode, str]] = ..., algorithm: _Optional[_Union[HashAlgorithm, str]] = ..., digits: _Optional[int] = ..., period_seconds: _Optional[int] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("serial", "codice_fiscale", "kind", "state", "params", "created_at", "activated_at", "last_used_at", "locked_until", "failures", "replaces_serial")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    LOCKED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    REPLACES_SERIAL_FIELD_NUMBER: _ClassVar[int]
    serial: str
    codice_fiscale: str
    kind: TokenKind
    state: TokenState
    params: OtpParameters
    created_at: int
    activated_at: int
    last_used_at: int
    locked_until: int
    failures: int
    replaces_serial: str
    def __init__(self, serial: _Optional[str] = ..., codice_fiscale: _Optional[str] = ..., kind: _Optional[_Union[TokenKind, str]] = ..., state: _Optional[_Union[TokenState, str]] = ..., params: _Optional[_Union[OtpParameters, _Mapping]] = ..., created_at: _Optional[int] = ..., activated_at: _Optional[int] = ..., last_used_at: _Optional[int] = ..., locked_until: _Optional[int] = ..., failures: _Optional[int] = ..., replaces_serial: _Optional[str] = ...) -> None: ...

class Citizen(_message.Message):
    __slots__ = ("codice_fiscale", "given_name", "surname", "birth_date", "sex", "birth_place", "card_id", "has_phone_number")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    SURNAME_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    BIRTH_PLACE_FIELD_NUMBER: _ClassVar[int]
    CARD_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    given_name: str
    surname: str
    birth_date: str
    sex: str
    birth_place: str
    card_id: str
    has_phone_number: bool
    def __init__(self, codice_fiscale: _Optional[str] = ..., given_name: _Optional[str] = ..., surname: _Optional[str] = ..., birth_date: _Optional[str] = ..., sex: _Optional[str] = ..., birth_place: _Optional[str] = ..., card_id: _Optional[str] = ..., has_phone_number: _Optional[bool] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("result", "serial", "retry_after_seconds")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    result: VerifyResult
    serial: str
    retry_after_seconds: int
    def __init__(self, result: _Optional[_Union[VerifyResult, str]] = ..., serial: _Optional[str] = ..., retry_after_seconds: _Optional[int] = ...) -> None: ...
