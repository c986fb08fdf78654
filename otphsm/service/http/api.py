"""One HTTP/JSON call, from a request line, headers and body to an answer, without sockets: the
route is found among the declared ones, the request message is built with the canonical
proto3 JSON mapping (the body, the path variables, the query parameters for a GET), and the
call goes through the gRPC interceptor's handler, as a gRPC call does: the same role check,
failed-check limit, error table, log line and metrics.

A refusal answers the JSON of `google.rpc.Status` as Google's HTTP APIs do
(`{"error": {"code", "status", "message", "details"}}`) with our `reason` and
`retryAfterSeconds` beside, and a `Retry-After` header; the HTTP status follows the standard
mapping of gRPC codes (google/rpc/code.proto).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

# googleapis-common-protos ships .pyi files, but types-protobuf's google-stubs hide them
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from otphsm.client import wire
from otphsm.core.errors import InvalidInput
from otphsm.service.errors import INTERNAL_MESSAGE, CallAborted
from otphsm.service.http.context import HttpCallContext
from otphsm.service.http.openapi import openapi_json
from otphsm.service.http.routes import Route, declared_routes
from otphsm.service.interceptor import ServiceInterceptor, Undecodable

log = logging.getLogger("otphsm.http")

JSON = "application/json"
OPENAPI_PATH = "/openapi.json"

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
"""gRPC code → HTTP status, as google/rpc/code.proto states it."""

NO_ROUTE = "NO_ROUTE"
"""The reason of a 404 for a path no route declares (the RPC's own NOT_FOUND has its own)."""

_FIELD_IN_PARSE_ERROR = (
    re.compile(r'has no field named "([A-Za-z_][A-Za-z0-9_]{0,63})"'),
    re.compile(r"Failed to parse ([A-Za-z_][A-Za-z0-9_]{0,63}) field"),
)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON


Behaviour = Callable[[Any, Any], Any]
"""A unary handler behind the interceptor: (request, context) → response."""


class _HandlerTable:
    """Stands in for `grpc.Server` to the generated `add_*Servicer_to_server` functions: keeps
    the method handlers they register."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """The same handlers come by `add_registered_method_handlers`."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


def api_for(
    interceptor: ServiceInterceptor,
    servicers: Sequence[tuple[Callable[[Any, Any], None], object]],
    *,
    version: str = "v1",
) -> HttpApi:
    """The API of the declared routes, each calling its servicer behind `interceptor`;
    `servicers` as given to grpc: (the generated `add_*_to_server`, the servicer)."""
    table = _HandlerTable()
    for add, servicer in servicers:
        add(servicer, table)
    routes = declared_routes()
    behaviours: dict[str, Behaviour] = {}
    for route in routes:
        handler = table.handlers.get(route.rpc)
        wrapped = interceptor.handler(route.rpc, handler) if handler is not None else None
        if wrapped is not None and wrapped.unary_unary is not None:
            behaviours[route.rpc] = wrapped.unary_unary
    return HttpApi(routes, behaviours, openapi_json(routes, title="otphsm", version=version))


class HttpApi:
    """The routes and, for each, its RPC's handler behind the interceptor."""

    def __init__(
        self, routes: Sequence[Route], behaviours: Mapping[str, Behaviour], openapi: bytes
    ) -> None:
        missing = [route.rpc for route in routes if route.rpc not in behaviours]
        if missing:
            raise ValueError(f"routes without a served RPC: {', '.join(missing)}")
        self.routes = tuple(routes)
        self._behaviours = behaviours
        self._openapi = openapi

    def answer(self, verb: str, target: str, body: bytes, context: HttpCallContext) -> HttpAnswer:
        path, _, query = target.partition("?")
        if path == OPENAPI_PATH and verb == "GET":
            return HttpAnswer(200, self._openapi)
        found = self._route(verb, path)
        if isinstance(found, HttpAnswer):
            log.info("http", extra={"fields": {"path": path[:200], "status": found.status}})
            return found
        route, variables = found
        request = _request(route, variables, query, body)
        try:
            response = self._behaviours[route.rpc](request, context)
        except CallAborted as aborted:
            return _error(aborted.code, aborted.details, context.trailing)
        except Exception:  # the interceptor maps every error; this is a bug of ours
            log.exception("http call failed", extra={"fields": {"rpc": route.rpc}})
            return _error(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, ())
        text = json_format.MessageToJson(response, always_print_fields_with_no_presence=True)
        return HttpAnswer(200, text.encode())

    def _route(self, verb: str, path: str) -> tuple[Route, dict[str, str]] | HttpAnswer:
        allowed: list[str] = []
        for route in self.routes:
            variables = route.match(path)
            if variables is None:
                continue
            if route.verb == verb:
                return route, variables
            allowed.append(route.verb)
        if allowed:
            answer = _error(grpc.StatusCode.UNIMPLEMENTED, f"{verb} is not served here", ())
            return HttpAnswer(405, answer.body, (("Allow", ", ".join(allowed)),))
        return _error(grpc.StatusCode.NOT_FOUND, "no such route", (), reason=NO_ROUTE)


def _request(route: Route, variables: Mapping[str, str], query: str, body: bytes) -> object:
    """The request message, or `Undecodable` (refused as INVALID_ARGUMENT by the interceptor,
    after the role check, like a gRPC request that does not parse)."""
    fields: dict[str, Any] = {}
    try:
        if route.body == "*":
            parsed = json.loads(body or b"{}")
            if not isinstance(parsed, dict):
                raise InvalidInput("the body is a JSON object: the request message")
            fields.update(parsed)
        else:
            fields.update(parse_qsl(query, keep_blank_values=True))
        fields.update(variables)  # a path variable wins over the same field in the body
        message: Message = route.new_request()
        json_format.ParseDict(fields, message)
    except InvalidInput as exc:
        return Undecodable(exc)
    except (ValueError, json_format.ParseError) as exc:  # the library's words: not for callers
        return Undecodable(_parse_refusal(exc))
    return message


def _parse_refusal(exc: Exception) -> InvalidInput:
    text = str(exc)
    for pattern in _FIELD_IN_PARSE_ERROR:
        named = pattern.search(text)
        if named:
            field = named.group(1)
            return InvalidInput(
                f"{field}: not a field of this request, or not of its type", field=field
            )
    return InvalidInput("the request is not this RPC's message in proto3 JSON")


def _error(
    code: grpc.StatusCode,
    message: str,
    trailing: Sequence[tuple[str, str | bytes]],
    *,
    reason: str = "",
) -> HttpAnswer:
    metadata = dict(trailing)
    status = status_pb2.Status(code=code.value[0], message=message)
    details_bin = metadata.get(wire.STATUS_DETAILS_KEY)
    if isinstance(details_bin, bytes):
        status.ParseFromString(details_bin)
    elif reason:
        info = error_details_pb2.ErrorInfo(reason=reason, domain=wire.ERROR_DOMAIN)
        status.details.add().Pack(info)
    reason_text = metadata.get(wire.REASON_KEY)
    retry_text = metadata.get(wire.RETRY_AFTER_KEY)
    error: dict[str, Any] = {
        "code": HTTP_STATUS.get(code, 500),
        "status": code.name,
        "message": message,
        "reason": reason_text if isinstance(reason_text, str) else reason,
        "details": json_format.MessageToDict(status).get("details", []),
    }
    headers: tuple[tuple[str, str], ...] = ()
    if isinstance(retry_text, str) and retry_text.isdigit():
        error["retryAfterSeconds"] = int(retry_text)
        headers = (("Retry-After", retry_text),)
    body = json.dumps({"error": error}, ensure_ascii=False).encode()
    return HttpAnswer(HTTP_STATUS.get(code, 500), body, headers)
