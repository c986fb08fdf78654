"""`server.model = "event-loop"`: the gRPC server on grpc.aio, behind the same `grpc.Server`
interface as gRPC's threaded server, so `start_server`, `bind` and the stop path do not change.

The code checks (the RPCs whose `RpcSpec.checks_code`) run on the event loop's own thread, one
at a time: a verify's store and HSM calls block the loop, but no verify hands its request to
another thread or waits for the GIL behind another one, which is where the threaded server
spends most of a SQLite verify's CPU (README, Benchmarks). Every other RPC (enrolment, card
dialogues, imports, health, reflection) runs as it does on the threaded server, in a pool of
`server.max_workers` threads, with grpc.aio's synchronous context.

The interceptors are applied here, in order, once per method (the threaded server asks them at
every call; otphsm's own interceptor wraps each method once either way); a check run on the
loop gets `_InlineContext`, whose `abort` raises as the threaded server's does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc

from otphsm.service.errors import CallAborted


class _InlineContext:
    """What the interceptor and the servicers use of a call's context, for a call run on the
    loop: `abort` raises (the loop's handler then aborts the call)."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context
        self._code: grpc.StatusCode | None = None

    def auth_context(self) -> Any:
        return self._context.auth_context()

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def peer(self) -> str:
        return self._context.peer()

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata(metadata)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        raise CallAborted(code, details)


Behaviour = Callable[[Any, Any], Any]


def _on_the_loop(behaviour: Behaviour) -> Callable[[Any, Any], Any]:
    async def serve(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return behaviour(request, _InlineContext(context))
        except CallAborted as aborted:
            await context.abort(aborted.code, aborted.details)

    return serve


class _Dispatch(grpc.GenericRpcHandler):
    """Finds a method's handler among those added, passes it through the interceptors (once
    per method), and puts the code checks on the loop. Called on the loop's thread only."""

    def __init__(
        self,
        interceptors: Sequence[grpc.ServerInterceptor],
        on_loop: Callable[[str], bool],
    ) -> None:
        self._interceptors = list(interceptors)
        self._on_loop = on_loop
        self.generic: list[grpc.GenericRpcHandler] = []
        self.registered: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._ready: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        ready = self._ready.get(method)
        if ready is not None:
            return ready
        handler = self._intercepted(0, handler_call_details)
        if handler is not None and handler.unary_unary is not None and self._on_loop(method):
            handler = grpc.unary_unary_rpc_method_handler(
                _on_the_loop(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler is not None:  # never an entry for a name nobody serves
            self._ready[method] = handler
        return handler

    def _intercepted(
        self, index: int, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if index == len(self._interceptors):
            return self._find(details)
        return self._interceptors[index].intercept_service(
            lambda d: self._intercepted(index + 1, d), details
        )

    def _find(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self.registered.get(details.method)
        if handler is not None:
            return handler
        for generic in self.generic:
            found = generic.service(details)
            if found is not None:
                return found
        return None


class EventLoopServer(grpc.Server):
    """grpc.aio's server on its own event-loop thread, driven through `grpc.Server`'s
    synchronous methods (each one run on the loop: grpc.aio's objects belong to it)."""

    def __init__(
        self,
        *,
        max_workers: int,
        interceptors: Sequence[grpc.ServerInterceptor],
        options: Sequence[tuple[str, Any]],
        on_loop: Callable[[str], bool],
    ) -> None:
        self._dispatch = _Dispatch(interceptors, on_loop)
        self._pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rpc-event-loop", daemon=True
        )
        self._thread.start()
        self._server: grpc.aio.Server = self._run(self._create(options))
        self._stopping = False
        self._stopped = threading.Event()

    async def _create(self, options: Sequence[tuple[str, Any]]) -> grpc.aio.Server:
        return grpc.aio.server(
            migration_thread_pool=self._pool,
            handlers=[self._dispatch],
            options=list(options),
        )

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]
    ) -> None:
        self._dispatch.generic.extend(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for name, handler in method_handlers.items():
            self._dispatch.registered[f"/{service_name}/{name}"] = handler

    def add_insecure_port(self, address: str) -> int:
        return int(self._run(self._call(self._server.add_insecure_port, address)))

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return int(self._run(self._call(self._server.add_secure_port, address, server_credentials)))

    @staticmethod
    async def _call(function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)

    def start(self) -> None:
        self._run(self._server.start())

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls, let those in flight finish within `grace` seconds, then stop the
        loop and the pool. The event is set once it is done; idempotent."""
        if self._stopping:
            return self._stopped
        self._stopping = True

        async def stop_server() -> None:
            try:
                await self._server.stop(grace)
            finally:
                self._loop.call_soon(self._loop.stop)

        def close() -> None:
            self._thread.join()
            self._loop.close()
            self._pool.shutdown(wait=False)
            self._stopped.set()

        asyncio.run_coroutine_threadsafe(stop_server(), self._loop)
        threading.Thread(target=close, name="rpc-event-loop-stop", daemon=True).start()
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)
