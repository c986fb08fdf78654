"""`server.model = "event-loop"` (otphsm/service/event_loop.py): code checks on the loop's
thread, every other RPC in the pool, the interceptors applied as gRPC's threaded server applies
them, an abort from a check run on the loop reaching the caller, and a graceful stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from otphsm.service.event_loop import EventLoopServer
from otphsm.service.rpcs import checks_code

VERIFY = "/otphsm.v1.ValidationService/Verify"
"""Checks a code: run on the loop."""
GET_TOKEN = "/otphsm.v1.AdminService/GetToken"
"""Checks none: run in the pool."""
WATCH_CARDS = "/otphsm.v1.EnrolmentService/WatchCards"
"""A server stream: in the pool."""


class Handlers(grpc.GenericRpcHandler):
    """Raw-bytes handlers that record the thread each call ran on."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}
        self.release = threading.Event()
        self.release.set()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method == WATCH_CARDS:
            return grpc.unary_stream_rpc_method_handler(self._stream(method))
        if method in (VERIFY, GET_TOKEN):
            return grpc.unary_unary_rpc_method_handler(self._unary(method))
        return None

    def _unary(self, method: str) -> Callable[[bytes, Any], bytes]:
        def behaviour(request: bytes, context: Any) -> bytes:
            self.threads[method] = threading.current_thread().name
            if request == b"abort":
                context.set_trailing_metadata((("x-why", "asked"),))
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the field request was bad")
            if request == b"slow":
                self.release.wait(10)
            return b"answer to " + request

        return behaviour

    def _stream(self, method: str) -> Callable[[bytes, Any], Iterator[bytes]]:
        def behaviour(request: bytes, context: Any) -> Iterator[bytes]:
            self.threads[method] = threading.current_thread().name
            if request == b"watch":  # as WatchCards and Health.Watch: until the call ends
                ended = threading.Event()
                context.add_callback(ended.set)
                yield b"watching"
                ended.wait(30)
                return
            yield from (b"one", b"two", b"three")

        return behaviour


class CountingInterceptor(grpc.ServerInterceptor):
    def __init__(self, name: str, seen: list[tuple[str, str]]) -> None:
        self.name = name
        self.seen = seen

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        self.seen.append((self.name, handler_call_details.method))
        return continuation(handler_call_details)


@pytest.fixture
def served() -> Iterator[tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]]]:
    handlers = Handlers()
    seen: list[tuple[str, str]] = []
    interceptors = [CountingInterceptor("outer", seen), CountingInterceptor("inner", seen)]
    server = EventLoopServer(
        max_workers=2, interceptors=interceptors, options=[], on_loop=checks_code
    )
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield handlers, channel, server, seen
    finally:
        channel.close()
        server.stop(0).wait(10)


def test_code_checks_run_on_the_loop_and_other_calls_in_the_pool(
    served: tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]],
) -> None:
    handlers, channel, _, _ = served
    assert channel.unary_unary(VERIFY)(b"code", timeout=10) == b"answer to code"
    assert channel.unary_unary(GET_TOKEN)(b"serial", timeout=10) == b"answer to serial"
    assert list(channel.unary_stream(WATCH_CARDS)(b"", timeout=10)) == [b"one", b"two", b"three"]
    assert handlers.threads[VERIFY] == "rpc-event-loop"
    assert handlers.threads[GET_TOKEN].startswith("rpc_")
    assert handlers.threads[WATCH_CARDS].startswith("rpc_")


def test_the_interceptors_wrap_each_method_once_in_order(
    served: tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]],
) -> None:
    _, channel, _, seen = served
    for _ in range(3):
        channel.unary_unary(VERIFY)(b"code", timeout=10)
    assert seen == [("outer", VERIFY), ("inner", VERIFY)]


@pytest.mark.parametrize("method", [VERIFY, GET_TOKEN])
def test_an_abort_reaches_the_caller_with_its_status_and_trailers(
    served: tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]], method: str
) -> None:
    _, channel, _, _ = served
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(method)(b"abort", timeout=10)
    error: Any = raised.value
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "the field request was bad"
    assert ("x-why", "asked") in tuple(error.trailing_metadata())


def test_an_unknown_method_is_unimplemented(
    served: tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]],
) -> None:
    _, channel, _, _ = served
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary("/otphsm.v1.ValidationService/Nothing")(b"", timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_a_graceful_stop_finishes_the_call_in_flight_and_refuses_new_ones(
    served: tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]],
) -> None:
    handlers, channel, server, _ = served
    handlers.release.clear()
    in_flight = channel.unary_unary(GET_TOKEN).future(b"slow", timeout=10)
    deadline = time.monotonic() + 5
    while GET_TOKEN not in handlers.threads and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped = server.stop(5)
    time.sleep(0.2)
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(VERIFY)(b"late", timeout=2)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert not stopped.is_set()
    handlers.release.set()
    assert in_flight.result() == b"answer to slow"
    assert stopped.wait(10)
    assert server.stop(5) is stopped  # idempotent


def test_streams_cancelled_by_their_clients_give_their_threads_back(
    served: tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]],
) -> None:
    _, channel, _, _ = served
    for _ in range(4):  # twice the pool's threads
        watch = channel.unary_stream(WATCH_CARDS)(b"watch", timeout=10)
        assert next(watch) == b"watching"
        watch.cancel()
    assert channel.unary_unary(GET_TOKEN)(b"serial", timeout=5) == b"answer to serial"


def test_a_stream_still_open_does_not_keep_the_server_from_stopping(
    served: tuple[Handlers, grpc.Channel, EventLoopServer, list[tuple[str, str]]],
) -> None:
    _, channel, server, _ = served
    watch = channel.unary_stream(WATCH_CARDS)(b"watch", timeout=30)
    assert next(watch) == b"watching"
    started = time.monotonic()
    assert server.stop(0.5).wait(10)
    assert time.monotonic() - started < 5
    with pytest.raises(grpc.RpcError):
        next(watch)
