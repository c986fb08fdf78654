from google.api import annotations_pb2 as _annotations_pb2
from otphsm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenRequest(_message.Message):
    __slots__ = ("serial", "reason")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    serial: str
    reason: str
    def __init__(self, serial: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: _common_pb2.Token
    def __init__(self, token: _Optional[_Union[_common_pb2.Token, _Mapping]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ("codice_fiscale", "state", "kind", "page_size", "page_token")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    state: _common_pb2.TokenState
    kind: _common_pb2.TokenKind
    page_size: int
    page_token: str
    def __init__(self, codice_fiscale: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.TokenState, str]] = ..., kind: _Optional[_Union[_common_pb2.TokenKind, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens", "next_page_token")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[_common_pb2.Token]
    next_page_token: str
    def __init__(self, tokens: _Optional[_Iterable[_Union[_common_pb2.Token, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFobsRequest(_message.Message):
    __slots__ = ("unassigned_only", "state", "page_size", "page_token")
    UNASSIGNED_ONLY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    unassigned_only: bool
    state: _common_pb2.TokenState
    page_size: int
    page_token: str
    def __init__(self, unassigned_only: _Optional[bool] = ..., state: _Optional[_Union[_common_pb2.TokenState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFobsResponse(_message.Message):
    __slots__ = ("fobs", "next_page_token")
    FOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fobs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Token]
    next_page_token: str
    def __init__(self, fobs: _Optional[_Iterable[_Union[_common_pb2.Token, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListAuditEntriesRequest(_message.Message):
    __slots__ = ("from_seq", "since", "page_size", "page_token")
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    from_seq: int
    since: int
    page_size: int
    page_token: str
    def __init__(self, from_seq: _Optional[int] = ..., since: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "at", "actor", "action", "subject", "details_json", "prev_hash", "entry_hash", "mac")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: int
    actor: str
    action: str
    subject: str
    details_json: str
    prev_hash: bytes
    entry_hash: bytes
    mac: bytes
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., details_json: _Optional[str] = ..., prev_hash: _Optional[bytes] = ..., entry_hash: _Optional[bytes] = ..., mac: _Optional[bytes] = ...) -> None: ...

class ListAuditEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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
