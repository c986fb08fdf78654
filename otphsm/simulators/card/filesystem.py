"""The card's file tree, built from a table of EF paths, and its FCI/FCP encoding."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum

from otphsm.smartcard.cns_files import MF

FID_LENGTH = 2
_MAX_EF_SIZE = 0x7FFF + 1


class FciTag(IntEnum):
    FCP_TEMPLATE = 0x62
    FCI_TEMPLATE = 0x6F
    SIZE = 0x80
    DESCRIPTOR = 0x82
    FID = 0x83
    SECURITY_ATTRIBUTES = 0x86
    LIFE_CYCLE = 0x8A


TRANSPARENT_EF_DESCRIPTOR = bytes((0x01, 0x00, 0x00))
DF_DESCRIPTOR = bytes((0x38,))
LIFE_CYCLE_ACTIVATED = bytes((0x05,))
EF_ACCESS = bytes((0x00,)) + b"\xff" * 8
"""READ always; UPDATE, APPEND, INVALIDATE, REHABILITATE, ERASE, ADMIN, INC, DEC never."""
DF_ACCESS = b"\xff" * 9


@dataclass(frozen=True, slots=True)
class Node:
    """A DF (`content is None`) or a transparent EF, named by its absolute path."""

    path: bytes
    content: bytes | None

    @property
    def is_df(self) -> bool:
        return self.content is None

    @property
    def fid(self) -> bytes:
        return self.path[-FID_LENGTH:]

    @property
    def parent_path(self) -> bytes:
        return self.path[:-FID_LENGTH] if len(self.path) > FID_LENGTH else self.path


def _fids(path: bytes) -> Iterator[bytes]:
    for i in range(0, len(path), FID_LENGTH):
        yield path[i : i + FID_LENGTH]


def _check_path(path: bytes) -> None:
    if len(path) < FID_LENGTH or len(path) % FID_LENGTH or not path.startswith(MF):
        raise ValueError(f"not an absolute path from 3F00: {path.hex()}")


class FileSystem:
    """Immutable file tree: every prefix of an EF path is a DF; MF always exists."""

    def __init__(self, files: Mapping[bytes, bytes]) -> None:
        nodes: dict[bytes, Node] = {MF: Node(MF, None)}
        for path, content in files.items():
            _check_path(path)
            if len(path) == FID_LENGTH:
                raise ValueError("the MF is a DF and holds no content")
            if len(content) > _MAX_EF_SIZE:
                raise ValueError(f"EF {path.hex()} exceeds the 15-bit offset range")
            for end in range(FID_LENGTH * 2, len(path), FID_LENGTH):
                prefix = path[:end]
                if prefix in nodes and not nodes[prefix].is_df:
                    raise ValueError(f"{prefix.hex()} is both an EF and a DF")
                nodes.setdefault(prefix, Node(prefix, None))
            if path in nodes:
                raise ValueError(f"{path.hex()} is both an EF and a DF")
            nodes[path] = Node(path, bytes(content))
        self._nodes = nodes

    def __contains__(self, path: object) -> bool:
        return path in self._nodes

    def get(self, path: bytes) -> Node | None:
        return self._nodes.get(path)

    @property
    def mf(self) -> Node:
        return self._nodes[MF]

    def files(self) -> dict[bytes, bytes]:
        return {p: n.content for p, n in self._nodes.items() if n.content is not None}

    def child(self, df: Node, fid: bytes) -> Node | None:
        return self._nodes.get(df.path + fid) if df.is_df else None

    def parent(self, node: Node) -> Node:
        return self._nodes[node.parent_path]

    def by_fid(self, current_df: Node, fid: bytes) -> Node | None:
        """ISO P1=00: the MF, the current DF, a child of it, or a sibling of it."""
        if fid == MF:
            return self.mf
        if fid == current_df.fid:
            return current_df
        found = self.child(current_df, fid)
        if found is None and current_df.path != MF:
            found = self.child(self.parent(current_df), fid)
        return found

    def by_path(self, start: Node, relative: bytes) -> Node | None:
        """Walk FIDs from `start` (P1=08 from the MF, P1=09 from the current DF)."""
        if not relative or len(relative) % FID_LENGTH:
            return None
        node: Node | None = start
        for fid in _fids(relative):
            if node is None:
                return None
            node = self.child(node, fid)
        return node


def _tlv(tag: int, value: bytes) -> bytes:
    length = len(value)
    if length < 0x80:
        encoded = bytes((length,))
    elif length <= 0xFF:
        encoded = bytes((0x81, length))
    else:
        encoded = bytes((0x82,)) + length.to_bytes(2, "big")
    return bytes((tag,)) + encoded + value


def file_control_information(node: Node, template: FciTag = FciTag.FCI_TEMPLATE) -> bytes:
    """`6F`/`62` template with size (EFs), descriptor, FID, 9 access bytes, life cycle."""
    parts = []
    if node.content is not None:
        parts.append(_tlv(FciTag.SIZE, len(node.content).to_bytes(2, "big")))
        parts.append(_tlv(FciTag.DESCRIPTOR, TRANSPARENT_EF_DESCRIPTOR))
    else:
        parts.append(_tlv(FciTag.DESCRIPTOR, DF_DESCRIPTOR))
    parts.append(_tlv(FciTag.FID, node.fid))
    parts.append(_tlv(FciTag.SECURITY_ATTRIBUTES, DF_ACCESS if node.is_df else EF_ACCESS))
    parts.append(_tlv(FciTag.LIFE_CYCLE, LIFE_CYCLE_ACTIVATED))
    return _tlv(template, b"".join(parts))
