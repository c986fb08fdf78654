"""The part of `grpc.ServicerContext` that the interceptor and the servicers use, for a call
that came over HTTP: the client certificate as grpc's auth context gives it, the headers as
invocation metadata (insecure mode reads the role there), abort and trailing metadata."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from otphsm.service.errors import CallAborted


class HttpCallContext:
    otphsm_transport = "http"
    """Read by the interceptor: its log line says the call came over HTTP."""

    def __init__(
        self, peer: str, certificate_pem: bytes | None, headers: Mapping[str, str]
    ) -> None:
        self._peer = peer
        self._pem = certificate_pem
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())
        self._code: grpc.StatusCode | None = None
        self.trailing: Sequence[tuple[str, str | bytes]] = ()

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return {"x509_pem_cert": [self._pem]} if self._pem else {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing = tuple(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        raise CallAborted(code, details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        return False  # unary calls only: nothing to call back
