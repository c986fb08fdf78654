from otphsm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenRequest(_message.Message):
    __slots__ = ("serial",)
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    serial: str
    def __init__(self, serial: _Optional[str] = ...) -> None: ...

class TokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: _common_pb2.Token
    def __init__(self, token: _Optional[_Union[_common_pb2.Token, _Mapping]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ("codice_fiscale",)
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    def __init__(self, codice_fiscale: _Optional[str] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[_common_pb2.Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[_common_pb2.Token, _Mapping]]] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ("expected_head",)
    EXPECTED_HEAD_FIELD_NUMBER: _ClassVar[int]
    expected_head: AuditHead
    def __init__(self, expected_head: _Optional[_Union[AuditHead, _Mapping]] = ...) -> None: ...

class AuditHead(_message.Message):
    __slots__ = ("seq", "entry_hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    entry_hash: bytes
    def __init__(self, seq: _Optional[int] = ..., entry_hash: _Optional[bytes] = ...) -> None: ...

class AuditFinding(_message.Message):
    __slots__ = ("seq", "problem")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    seq: int
    problem: str
    def __init__(self, seq: _Optional[int] = ..., problem: _Optional[str] = ...) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("entries", "intact", "findings", "head")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    INTACT_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    entries: int
    intact: bool
    findings: _containers.RepeatedCompositeFieldContainer[AuditFinding]
    head: AuditHead
    def __init__(self, entries: _Optional[int] = ..., intact: _Optional[bool] = ..., findings: _Optional[_Iterable[_Union[AuditFinding, _Mapping]]] = ..., head: _Optional[_Union[AuditHead, _Mapping]] = ...) -> None: ...

class ImportPskcRequest(_message.Message):
    __slots__ = ("pskc", "pre_shared_key", "password")
    PSKC_FIELD_NUMBER: _ClassVar[int]
    PRE_SHARED_KEY_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    pskc: bytes
    pre_shared_key: bytes
    password: str
    def __init__(self, pskc: _Optional[bytes] = ..., pre_shared_key: _Optional[bytes] = ..., password: _Optional[str] = ...) -> None: ...

class ImportPskcResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[_common_pb2.Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[_common_pb2.Token, _Mapping]]] = ...) -> None: ...
