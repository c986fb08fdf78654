"""SELECT and READ BINARY."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum

from otphsm.simulators.card.filesystem import FID_LENGTH, FciTag, Node, file_control_information
from otphsm.simulators.card.state import CardContext
from otphsm.smartcard.apdu import CommandApdu, ResponseApdu
from otphsm.smartcard.cns_files import MF
from otphsm.smartcard.status_words import StatusWord


class SelectBy(IntEnum):
    FID = 0x00
    CHILD_DF = 0x01
    CHILD_EF = 0x02
    PARENT_DF = 0x03
    DF_NAME = 0x04
    PATH_FROM_MF = 0x08
    PATH_FROM_CURRENT_DF = 0x09


class SelectAnswer(IntEnum):
    FCI = 0x00
    FCP = 0x04
    NONE = 0x0C


_OFFSET_HIGH_MASK = 0x7F
_SFI_FLAG = 0x80


def _sw(sw: int, data: bytes = b"") -> ResponseApdu:
    return ResponseApdu.of(sw, data)


def _by_fid(ctx: CardContext, by: SelectBy, data: bytes) -> Node | StatusWord | None:
    fs, current = ctx.fs, ctx.session.current_df
    if by is SelectBy.FID and not data:
        return fs.mf
    if len(data) != FID_LENGTH:
        return StatusWord.WRONG_LENGTH
    if by is SelectBy.FID:
        return fs.by_fid(current, data)
    node = fs.child(current, data)
    wanted_df = by is SelectBy.CHILD_DF
    return node if node is not None and node.is_df == wanted_df else None


def _by_path(ctx: CardContext, by: SelectBy, data: bytes) -> Node | StatusWord | None:
    fs = ctx.fs
    if not data or len(data) % FID_LENGTH:
        return StatusWord.WRONG_LENGTH
    if by is SelectBy.PATH_FROM_CURRENT_DF:
        return fs.by_path(ctx.session.current_df, data)
    if data[:FID_LENGTH] == MF:
        data = data[FID_LENGTH:]
    return fs.by_path(fs.mf, data) if data else fs.mf


def _parent(ctx: CardContext, by: SelectBy, data: bytes) -> Node | StatusWord | None:
    current = ctx.session.current_df
    if data:
        return StatusWord.WRONG_LENGTH
    return None if current.path == MF else ctx.fs.parent(current)


def _by_name(ctx: CardContext, by: SelectBy, data: bytes) -> Node | StatusWord | None:
    return None


_RESOLVERS: Mapping[
    SelectBy, Callable[[CardContext, SelectBy, bytes], Node | StatusWord | None]
] = {
    SelectBy.FID: _by_fid,
    SelectBy.CHILD_DF: _by_fid,
    SelectBy.CHILD_EF: _by_fid,
    SelectBy.PARENT_DF: _parent,
    SelectBy.DF_NAME: _by_name,
    SelectBy.PATH_FROM_MF: _by_path,
    SelectBy.PATH_FROM_CURRENT_DF: _by_path,
}


def select(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    try:
        by = SelectBy(apdu.p1)
        answer = SelectAnswer(apdu.p2)
    except ValueError:
        return _sw(StatusWord.INCORRECT_P1_P2)
    found = _RESOLVERS[by](ctx, by, apdu.data)
    if isinstance(found, StatusWord):
        return _sw(found)
    if found is None:
        return _sw(StatusWord.FILE_NOT_FOUND)
    session = ctx.session
    if found.is_df:
        session.current_df, session.current_ef = found, None
    else:
        session.current_df, session.current_ef = ctx.fs.parent(found), found
    if answer is SelectAnswer.NONE:
        return _sw(StatusWord.OK)
    template = FciTag.FCI_TEMPLATE if answer is SelectAnswer.FCI else FciTag.FCP_TEMPLATE
    return _sw(StatusWord.OK, file_control_information(found, template))


def read_binary(ctx: CardContext, apdu: CommandApdu) -> ResponseApdu:
    """Offset P1(7 bits)‖P2. A read past the end gives what is left and `62 82`; at exactly
    the end, no data and `62 82` (OpenSC 0.23 aborts a read loop on `6B 00` there); beyond
    the end, `6B 00`."""
    if apdu.p1 & _SFI_FLAG:
        return _sw(StatusWord.FUNCTION_NOT_SUPPORTED)
    if apdu.data or apdu.le is None:
        return _sw(StatusWord.WRONG_LENGTH)
    ef = ctx.session.current_ef
    if ef is None or ef.content is None:
        return _sw(StatusWord.NO_CURRENT_EF)
    offset = ((apdu.p1 & _OFFSET_HIGH_MASK) << 8) | apdu.p2
    if offset > len(ef.content) or not ef.content:
        return _sw(StatusWord.WRONG_P1_P2)
    chunk = ef.content[offset : offset + apdu.le]
    status = StatusWord.OK if len(chunk) == apdu.le else StatusWord.END_OF_FILE
    return _sw(status, chunk)
