"""The HTTP/JSON API's listener: the standard library's ThreadingHTTPServer (a thread per
connection, HTTP/1.1 keep-alive), behind TLS that requires a client certificate from the
configured client CA, as the gRPC port does. The TLS handshake runs in the connection's own
thread, so a slow client holds up nobody; the peer certificate
(`getpeercert(binary_form=True)`) goes to the same role lookup as a gRPC call's."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from otphsm.service.config import HttpSection, ServerSection
from otphsm.service.http.api import HttpAnswer, HttpApi
from otphsm.service.http.context import HttpCallContext

log = logging.getLogger("otphsm.http")

HANDSHAKE_SECONDS = 10.0
IDLE_SECONDS = 60.0
"""A keep-alive connection with no request for this long is closed."""


def tls_context(section: ServerSection) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(section.tls_cert, section.tls_key)
    context.load_verify_locations(cafile=section.tls_client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_SECONDS)
            self.request.do_handshake()
        super().setup()

    def version_string(self) -> str:
        return "otphsm"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, verb: str) -> None:
        length_text = self.headers.get("Content-Length", "0")
        length = int(length_text) if length_text.isdigit() else -1
        if length < 0 or length > self.server.max_body_bytes:
            self.close_connection = True
            self._send(
                HttpAnswer(
                    413,
                    b'{"error": {"code": 413, "status": "INVALID_ARGUMENT", '
                    b'"message": "the body is too large"}}',
                )
            )
            return
        body = self.rfile.read(length) if length else b""
        context = HttpCallContext(
            f"ipv4:{self.client_address[0]}:{self.client_address[1]}",
            self._certificate(),
            {key: value for key, value in self.headers.items()},
        )
        self._send(self.server.api.answer(verb, self.path, body, context))

    def _certificate(self) -> bytes | None:
        if not isinstance(self.request, ssl.SSLSocket):
            return None
        der = self.request.getpeercert(binary_form=True)
        return ssl.DER_cert_to_PEM_cert(der).encode() if der else None

    def _send(self, answer: HttpAnswer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Each call is logged once by the interceptor (or by `HttpApi`): not here again."""


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        api: HttpApi,
        tls: ssl.SSLContext | None,
        max_body_bytes: int,
        max_connections: int,
    ) -> None:
        self.api = api
        self.tls = tls
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        # an answer goes out as two writes (head, body): without this, Nagle's algorithm holds
        # the second until the client's delayed ACK (~40 ms on Linux) on a kept-alive connection
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:  # the handshake runs in the connection's thread (setup)
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection while fewer than max_connections are open; past that,
        the connection is closed unanswered (before its TLS handshake)."""
        if not self._slots.acquire(blocking=False):
            log.warning("http connection refused: max_connections reached")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A refused handshake or a dropped connection: one debug line, no traceback."""
        log.debug("http connection ended", extra={"fields": {"peer": str(client_address[0])}})

    def reload_tls(self, section: ServerSection) -> None:
        """SIGHUP: new connections get the certificate, key and client CA as the files hold
        them now; if they cannot be read, the previous ones stay (and the error is raised)."""
        if self.tls is not None:
            self.tls = tls_context(section)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def start_http_server(
    section: HttpSection, server: ServerSection, api: HttpApi, *, reuse_port: bool = False
) -> HttpServer:
    """Listen on [http] address:port with the [server] TLS files (none when insecure);
    `reuse_port` for one of several server processes sharing the port."""
    tls = None if server.insecure else tls_context(server)
    server_class = SharedHttpServer if reuse_port else HttpServer
    http = server_class(
        (section.address, section.port),
        api,
        tls,
        server.max_message_bytes,
        section.max_connections,
    )
    http.start()
    return http


class SharedHttpServer(HttpServer):
    """One of several server processes listening on the port (SO_REUSEPORT)."""

    allow_reuse_port = True


__all__ = ["HttpServer", "start_http_server"]
