from google.api import annotations_pb2 as _annotations_pb2
from otphsm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GridCardState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRID_CARD_STATE_UNSPECIFIED: _ClassVar[GridCardState]
    GRID_CARD_STATE_ACTIVE: _ClassVar[GridCardState]
    GRID_CARD_STATE_REVOKED: _ClassVar[GridCardState]
GRID_CARD_STATE_UNSPECIFIED: GridCardState
GRID_CARD_STATE_ACTIVE: GridCardState
GRID_CARD_STATE_REVOKED: GridCardState

class GridCard(_message.Message):
    __slots__ = ("serial", "codice_fiscale", "state", "cells", "cell_digits", "created_at", "revoked_at", "locked_until", "failures")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    CELL_DIGITS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    LOCKED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    serial: str
    codice_fiscale: str
    state: GridCardState
    cells: int
    cell_digits: int
    created_at: int
    revoked_at: int
    locked_until: int
    failures: int
    def __init__(self, serial: _Optional[str] = ..., codice_fiscale: _Optional[str] = ..., state: _Optional[_Union[GridCardState, str]] = ..., cells: _Optional[int] = ..., cell_digits: _Optional[int] = ..., created_at: _Optional[int] = ..., revoked_at: _Optional[int] = ..., locked_until: _Optional[int] = ..., failures: _Optional[int] = ...) -> None: ...

class IssueGridCardRequest(_message.Message):
    __slots__ = ("authorisation_id",)
    AUTHORISATION_ID_FIELD_NUMBER: _ClassVar[int]
    authorisation_id: str
    def __init__(self, authorisation_id: _Optional[str] = ...) -> None: ...

class IssueGridCardResponse(_message.Message):
    __slots__ = ("card", "pdf", "replaced_serials")
    CARD_FIELD_NUMBER: _ClassVar[int]
    PDF_FIELD_NUMBER: _ClassVar[int]
    REPLACED_SERIALS_FIELD_NUMBER: _ClassVar[int]
    card: GridCard
    pdf: bytes
    replaced_serials: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, card: _Optional[_Union[GridCard, _Mapping]] = ..., pdf: _Optional[bytes] = ..., replaced_serials: _Optional[_Iterable[str]] = ...) -> None: ...

class GridChallengeRequest(_message.Message):
    __slots__ = ("codice_fiscale", "origin")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    origin: str
    def __init__(self, codice_fiscale: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class GridChallengeResponse(_message.Message):
    __slots__ = ("serial", "first_cell", "second_cell", "expires_at")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    FIRST_CELL_FIELD_NUMBER: _ClassVar[int]
    SECOND_CELL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    serial: str
    first_cell: int
    second_cell: int
    expires_at: int
    def __init__(self, serial: _Optional[str] = ..., first_cell: _Optional[int] = ..., second_cell: _Optional[int] = ..., expires_at: _Optional[int] = ...) -> None: ...

class VerifyGridAnswerRequest(_message.Message):
    __slots__ = ("codice_fiscale", "first_value", "second_value", "origin")
    CODICE_FISCALE_FIELD_NUMBER: _ClassVar[int]
    FIRST_VALUE_FIELD_NUMBER: _ClassVar[int]
    SECOND_VALUE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    codice_fiscale: str
    first_value: str
    second_value: str
    origin: str
    def __init__(self, codice_fiscale: _Optional[str] = ..., first_value: _Optional[str] = ..., second_value: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class RevokeGridCardRequest(_message.Message):
    __slots__ = ("serial", "reason")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    serial: str
    reason: str
    def __init__(self, serial: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeGridCardResponse(_message.Message):
    __slots__ = ("card",)
    CARD_FIELD_NUMBER: _ClassVar[int]
    card: GridCard
    def __init__(self, card: _Optional[_Union[GridCard, _Mapping]] = ...) -> None: ...
