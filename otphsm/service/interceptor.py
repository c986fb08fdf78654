"""The one interceptor every RPC passes through: who is calling (auth), what they may call,
how errors become statuses (errors), and what is logged and counted (logs, metrics).

Servicers get the caller with `current_actor()` and raise domain errors; they never build a
status themselves.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import Message

from otphsm.client import wire
from otphsm.core.app.context import Actor
from otphsm.core.errors import InvalidInput, RateLimited
from otphsm.hsm.errors import HsmError
from otphsm.service.auth import Authenticator, CallerRefused
from otphsm.service.errors import status_for
from otphsm.service.metrics import Metrics
from otphsm.service.ratelimit import FailureRateLimiter
from otphsm.v1 import common_pb2

log = logging.getLogger("otphsm.rpc")

_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("otphsm_actor", default=None)

LOGGED_REQUEST_FIELDS = ("serial", "codice_fiscale")
"""The only request fields that reach the log (under "request"): identifiers, never secrets."""


def current_actor() -> Actor:
    """The caller of the RPC being served (set by `ServiceInterceptor`)."""
    actor = _actor.get()
    if actor is None:
        raise RuntimeError("no authenticated caller: is the RPC served without the interceptor?")
    return actor


class _CallRecord:
    """Timing, logging and metrics of one call. The log record keeps the call's outcome at
    the top (`code`: the gRPC status, `result`, `error`, `detail`, `cause`, `ms`) and what the
    caller sent, or the answer named, apart: `request` and `response` hold identifiers only."""

    def __init__(self, method: str, metrics: Metrics, transport: str = "grpc") -> None:
        self.method = method
        self.rpc = method.rsplit("/", 1)[-1]
        self.metrics = metrics
        self.started = time.perf_counter()
        self.fields: dict[str, Any] = {"rpc": method}
        if transport != "grpc":
            self.fields["transport"] = transport
        self.request: dict[str, str] = {}
        self.response: dict[str, str] = {}

    def note_request(self, request: object) -> None:
        for name in LOGGED_REQUEST_FIELDS:
            value = _field(request, name)
            if value:
                self.request[name] = value[:40]

    def note_actor(self, actor: Actor | None) -> None:
        if actor is not None:
            self.fields["caller"] = actor.name
            self.fields["role"] = actor.role.value

    def succeeded(self, response: object) -> None:
        if isinstance(response, common_pb2.VerifyResponse):
            result = wire.verify_result(response.result).value
            self.metrics.verifications.labels(self.rpc, result).inc()
            self.fields["result"] = result
        serial = _field(response, "serial") or _field(_field_message(response, "token"), "serial")
        if serial:
            self.response["serial"] = serial
        self._finish(grpc.StatusCode.OK, logging.INFO)

    def refused(self, code: grpc.StatusCode, message: str) -> None:
        self.fields["detail"] = message
        self._finish(code, logging.WARNING)

    def cancelled(self) -> None:
        self._finish(grpc.StatusCode.CANCELLED, logging.INFO)

    def failed(self, exc: BaseException, code: grpc.StatusCode, expected: bool) -> None:
        if isinstance(exc, HsmError):
            self.metrics.hsm_errors.labels(type(exc).__name__).inc()
        self.fields["error"] = type(exc).__name__
        if expected:
            self.fields["detail"] = str(exc)[:300]
            cause = exc.__cause__
            if cause is not None:  # a library's words, kept from the caller: for the log only
                self.fields["cause"] = f"{type(cause).__name__}: {cause}"[:300]
            self._finish(code, logging.INFO)
        else:
            self._finish(code, logging.ERROR, exc_info=exc)

    def _finish(
        self, code: grpc.StatusCode, level: int, exc_info: BaseException | None = None
    ) -> None:
        elapsed = time.perf_counter() - self.started
        self.metrics.rpc_latency.labels(self.rpc).observe(elapsed)
        if code is not grpc.StatusCode.OK:
            self.metrics.rpc_errors.labels(self.rpc, code.name).inc()
        self.fields["code"] = code.name
        self.fields["ms"] = round(elapsed * 1000, 2)
        if self.request:
            self.fields["request"] = self.request
        if self.response:
            self.fields["response"] = self.response
        log.log(level, "rpc", extra={"fields": self.fields}, exc_info=exc_info)


class ServiceInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics,
        limiter: FailureRateLimiter | None = None,
    ) -> None:
        self._auth = authenticator
        self._metrics = metrics
        self._limiter = limiter
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)  # registered handlers never change: wrap each once
        if wrapped is None:
            wrapped = self._wrap(method, continuation(handler_call_details))
            if wrapped is not None:  # never an entry for a name nobody serves
                self._wrapped[method] = wrapped
        return wrapped

    def handler(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """`handler` of `method` behind this interceptor, for a front end that calls the
        servicers without grpc's server (the HTTP/JSON API)."""
        return self._wrap(method, handler)

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any] | None
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:  # reflection
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(method, handler.stream_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return _refuse_client_streaming(method, handler)

    def _unary(
        self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def serve(request: Any, context: grpc.ServicerContext) -> Any:
            record = _CallRecord(method, self._metrics, _transport(context))
            record.note_request(request)
            token = self._enter(record, context)
            actor = _actor.get()
            caller = actor.name if actor is not None else ""
            limiter = self._limiter
            try:
                if limiter is not None:
                    limiter.admit(method, caller)
                response = behaviour(_decoded(request), context)
            except Exception as exc:
                if limiter is not None and not isinstance(exc, RateLimited):
                    limiter.record(method, caller, None)
                self._abort(record, context, exc)
                raise  # not reached: _abort raises
            finally:
                _actor.reset(token)
            if limiter is not None:
                limiter.record(method, caller, response)
            record.succeeded(response)
            return response

        return serve

    def _streaming(
        self, method: str, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def serve(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            record = _CallRecord(method, self._metrics)
            if isinstance(request, Message):
                record.note_request(request)
            # A generator may be resumed or closed from another context than the one it was
            # started in, so the actor is cleared rather than reset to a token.
            self._enter(record, context)
            try:
                yield from behaviour(_decoded(request), context)
            except GeneratorExit:
                record.cancelled()
                raise
            except Exception as exc:
                self._abort(record, context, exc)
                raise
            finally:
                _actor.set(None)
            record.succeeded(None)

        return serve

    def _enter(
        self, record: _CallRecord, context: grpc.ServicerContext
    ) -> contextvars.Token[Actor | None]:
        try:
            actor = self._auth.resolve(record.method, context)
        except CallerRefused as refusal:
            record.refused(refusal.code, refusal.message)
            context.set_trailing_metadata(status_for(refusal).metadata)
            context.abort(refusal.code, refusal.message)
        record.note_actor(actor)
        return _actor.set(actor)

    def _abort(self, record: _CallRecord, context: grpc.ServicerContext, exc: Exception) -> None:
        if _already_aborted(context):
            raise exc
        mapped = status_for(exc)
        record.failed(exc, mapped.code, mapped.expected)
        if mapped.metadata:
            context.set_trailing_metadata(mapped.metadata)
        context.abort(mapped.code, mapped.message)


class Undecodable:
    """Stands in for a request that did not parse, so the caller gets INVALID_ARGUMENT (grpc
    itself would answer INTERNAL) after authentication, like any other malformed input."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(
    deserialize: Callable[[bytes], Any] | None,
) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    parse = deserialize

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:
            return Undecodable(exc)

    return tolerant


def _decoded(request: Any) -> Any:
    if isinstance(request, Undecodable):
        if isinstance(request.error, InvalidInput):  # our own words (the HTTP front end's)
            raise request.error
        raise InvalidInput("the request does not decode as this RPC's message") from request.error
    return request


def _refuse_client_streaming(
    method: str, handler: grpc.RpcMethodHandler[Any, Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    def refuse(_requests: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served")

    return grpc.stream_unary_rpc_method_handler(
        refuse,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _transport(context: grpc.ServicerContext) -> str:
    """ "http" for the HTTP/JSON front end's calls (its context says so), else "grpc"."""
    transport = getattr(context, "otphsm_transport", "grpc")
    return transport if isinstance(transport, str) else "grpc"


def _already_aborted(context: grpc.ServicerContext) -> bool:
    code = getattr(context, "code", lambda: None)()  # grpc's server context has code()
    return code is not None and code is not grpc.StatusCode.OK


def _field(message: object, name: str) -> str:
    if not isinstance(message, Message) or name not in message.DESCRIPTOR.fields_by_name:
        return ""
    value = getattr(message, name)
    return value if isinstance(value, str) else ""


def _field_message(message: object, name: str) -> object:
    if not isinstance(message, Message) or name not in message.DESCRIPTOR.fields_by_name:
        return None
    return getattr(message, name)
