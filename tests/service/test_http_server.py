"""The HTTP listener itself (no TLS here; the mTLS path is tests/service/test_http_api.py): a
connection past `max_connections` is closed unanswered and the next one after a slot frees is
served; a body over the message limit is refused with 413 before it is read."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from otphsm.service.http.api import HttpApi
from otphsm.service.http.server import HttpServer

DOCUMENT = b'{"openapi": "3.1.0"}'


def listening(max_connections: int) -> Iterator[HttpServer]:
    listener = HttpServer(("127.0.0.1", 0), HttpApi((), {}, DOCUMENT), None, 1024, max_connections)
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()


@pytest.fixture
def one_slot() -> Iterator[HttpServer]:
    yield from listening(1)


@pytest.fixture
def server() -> Iterator[HttpServer]:
    yield from listening(8)


def get(port: int, path: str = "/openapi.json", body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST" if body is not None else "GET", path, body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_a_connection_past_the_limit_is_closed_and_a_freed_slot_serves(
    one_slot: HttpServer,
) -> None:
    server = one_slot
    holder = socket.create_connection(("127.0.0.1", server.port))
    try:
        time.sleep(0.2)  # accepted: it holds the only slot
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            get(server.port)
    finally:
        holder.close()
    deadline = time.monotonic() + 5
    while True:  # the holder's thread notices the close and frees the slot
        try:
            assert get(server.port) == (200, DOCUMENT)
            break
        except (http.client.RemoteDisconnected, ConnectionResetError):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_body_over_the_limit_is_refused_unread(server: HttpServer) -> None:
    status, body = get(server.port, "/v1/codes:verify", b"x" * 2048)
    assert status == 413
    assert json.loads(body)["error"]["status"] == "INVALID_ARGUMENT"
    status, body = get(server.port, "/v1/nowhere")
    assert (status, json.loads(body)["error"]["reason"]) == (404, "NO_ROUTE")
