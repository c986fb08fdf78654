"""`server.model = "event-loop"`: the gRPC server on grpc.aio, behind the same `grpc.Server`
interface as gRPC's threaded server, so `start_server`, `bind` and the stop path do not change.

The code checks (the RPCs whose `RpcSpec.checks_code`) run on the event loop's own thread, one
at a time: a verify's store and HSM calls block the loop, but no verify hands its request to
another thread or waits for the GIL behind another one, which is where the threaded server
spends most of a SQLite verify's CPU (README, Benchmarks). Every other RPC (enrolment, card
dialogues, imports, health, reflection) runs as it does on the threaded server, in a pool of
`server.max_workers` threads: a unary call with grpc.aio's synchronous context, a stream's
generator on one pool thread of its own, handing each response to the loop without waiting
for it (grpc.aio's own bridge waits, and a client that cancels a stream would hold that thread
for good).

The RADIUS front end reads its socket on the same loop (`loop`) and answers its code checks
there too (`otphsm.service.radius.server`).

The interceptors are applied here, in order, once per method (the threaded server asks them at
every call; otphsm's own interceptor wraps each method once either way); a check run on the
loop gets `_InlineContext`, whose `abort` raises as the threaded server's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
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
_END = object()


class _PooledContext(_InlineContext):
    """The context of a stream whose generator runs in the pool: the servicer's callbacks run
    when the call ends (grpc.aio runs them on the loop), and `finished` says it has."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        super().__init__(context)
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], Any]] = []
        self.finished = False

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        with self._lock:
            if not self.finished:
                self._callbacks.append(callback)
                return True
        callback()
        return True

    def is_active(self) -> bool:
        return not self.finished

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _pump(
    responses: Callable[[], Generator[Any, None, None]],
    context: _PooledContext,
    queue: asyncio.Queue[Any],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A stream's whole generator on one pool thread (its context variables stay its own),
    each response handed to the loop without waiting, so a call that ends (cancelled by its
    client, or the server stopping) never holds the thread: the generator is closed at its
    next response, or earlier by the servicer's own callbacks."""

    def put(item: Any) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server has stopped
            return False
        return True

    try:
        with contextlib.closing(responses()) as generator:
            for item in generator:
                if context.finished or not put(item):
                    return
        put(_END)
    except BaseException as error:  # handed to the loop, which ends the call with it
        put(_Raised(error))


def _pooled_stream(
    behaviour: Behaviour, pool: futures.Executor, *, client_streams: bool
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def serve(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        pooled = _PooledContext(context)
        context.add_done_callback(lambda _call: pooled.finish())  # type: ignore[arg-type]
        argument = _requests(request, loop) if client_streams else request
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop.run_in_executor(pool, _pump, lambda: behaviour(argument, pooled), pooled, queue, loop)
        while (item := await queue.get()) is not _END:
            if isinstance(item, _Raised):
                if isinstance(item.error, CallAborted):
                    await context.abort(item.error.code, item.error.details)
                raise item.error
            yield item

    return serve


def _requests(messages: AsyncIterator[Any], loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """A client stream read from a pool thread: each message fetched on the loop; the stream
    ends with the call."""

    async def fetch() -> Any:
        try:
            return await messages.__anext__()
        except StopAsyncIteration:
            return _END

    while True:
        try:
            message = asyncio.run_coroutine_threadsafe(fetch(), loop).result()
        except Exception:  # the call ended, or the loop with the server
            return
        if message is _END:
            return
        yield message


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
        pool: futures.Executor,
    ) -> None:
        self._pool = pool
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
        elif handler is not None and handler.unary_stream is not None:
            handler = grpc.unary_stream_rpc_method_handler(
                _pooled_stream(handler.unary_stream, self._pool, client_streams=False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler is not None and handler.stream_stream is not None:
            handler = grpc.stream_stream_rpc_method_handler(
                _pooled_stream(handler.stream_stream, self._pool, client_streams=True),
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
        self._pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc")
        self._dispatch = _Dispatch(interceptors, on_loop, self._pool)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rpc-event-loop", daemon=True
        )
        self._thread.start()
        self._server: grpc.aio.Server = self._run(self._create(options))
        self._stopping = False
        self._stopped = threading.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the code checks run on (the RADIUS front end reads its socket there)."""
        return self._loop

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
                left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
                for task in left:  # the streams that outlived the grace period
                    task.cancel()
                await asyncio.gather(*left, return_exceptions=True)
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
