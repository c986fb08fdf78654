"""The gRPC server: servicers, interceptor, TLS, health, reflection, metrics; and `serve`, which
runs it until SIGTERM/SIGINT and then shuts down gracefully. SIGHUP reads the TLS files and the
card CA and CRL files again (`RunningServer.reload`). With `server.processes` > 1, `serve`
supervises that many server processes (`otphsm.service.supervisor`), each one running `serve`
as a `Worker`: its ports shared with SO_REUSEPORT, its health covering the whole set."""

from __future__ import annotations

import errno
import gc
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from otphsm.core.errors import ConfigurationError
from otphsm.service.assembly import Assembly, assemble, prepare
from otphsm.service.auth import Authenticator
from otphsm.service.config import ServerModel, ServerSection, ServiceConfig, load_config
from otphsm.service.crls import CrlRefresher
from otphsm.service.event_loop import EventLoopServer
from otphsm.service.health import HealthMonitor
from otphsm.service.http import HttpServer, start_http_server
from otphsm.service.http.api import api_for
from otphsm.service.interceptor import ServiceInterceptor
from otphsm.service.logs import configure_logging
from otphsm.service.metrics import Metrics
from otphsm.service.ports import cannot_listen, in_use, port_taken
from otphsm.service.radius import RadiusServer
from otphsm.service.ratelimit import FailureRateLimiter
from otphsm.service.rpcs import ENROLMENT_SERVICE, SERVICE_NAMES, VALIDATION_SERVICE, checks_code
from otphsm.service.servicers import (
    AdminServicer,
    DeviceServicer,
    EnrolmentServicer,
    ValidationServicer,
)
from otphsm.service.servicers.grid import GridCardServicer
from otphsm.service.servicers.oob import OobServicer
from otphsm.service.supervisor import supervise
from otphsm.service.tls import ServerTls
from otphsm.service.workers import Worker, WorkerHeartbeat, follow_parent, process_count
from otphsm.store.urls import describe_store_url
from otphsm.v1 import (
    admin_pb2_grpc,
    device_pb2_grpc,
    enrolment_pb2_grpc,
    grid_pb2_grpc,
    oob_pb2_grpc,
    validation_pb2_grpc,
)

log = logging.getLogger("otphsm.server")


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    assembly: Assembly
    health: HealthMonitor
    metrics: Metrics
    enrolment: EnrolmentServicer
    tls: ServerTls | None
    crl_refresher: CrlRefresher
    metrics_port: int | None = None
    http: HttpServer | None = None
    radius: RadiusServer | None = None
    _stopped: bool = field(default=False, repr=False)

    def reload(self) -> None:
        """SIGHUP: the TLS certificate, key and client CA for the next handshakes (gRPC and
        HTTP), and the card CA and CRL files; what cannot be read is logged and the previous one
        kept."""
        if self.tls is not None and self.tls.reload() and self.http is not None:
            try:  # the files just proved usable: only a change in between can fail here
                self.http.reload_tls(self.tls.section)
            except (OSError, ValueError) as exc:
                log.error("HTTP TLS files not reloaded", extra={"fields": {"why": str(exc)}})
        self.assembly.crls.reload("SIGHUP")

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http is not None else None

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, then close
        the HSM and the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down", extra={"fields": {"grace_seconds": grace_seconds}})
        self.health.stop()
        self.crl_refresher.stop()
        self.enrolment.close()
        if self.http is not None:
            self.http.stop()
        if self.radius is not None:
            self.radius.stop(grace_seconds)
        self.server.stop(grace_seconds).wait()
        self.metrics.close()
        self.assembly.close()
        log.info("stopped")


def start_server(
    config: ServiceConfig,
    assembly: Assembly,
    *,
    metrics: Metrics | None = None,
    worker: Worker | None = None,
) -> RunningServer:
    """Bind, start, and begin health checks. The assembly is closed by `RunningServer.stop`.
    As a `worker`, the ports are shared (SO_REUSEPORT) and the health checks cover the set."""
    section = config.server
    shared = worker is not None
    metrics = metrics or Metrics(merged=shared)
    if section.insecure:
        log.warning(
            "INSECURE MODE: no TLS, no client certificates; roles come from request metadata. "
            "For local development only."
        )
    interceptor = ServiceInterceptor(
        Authenticator(insecure=section.insecure),
        metrics,
        FailureRateLimiter(config.ratelimit, assembly.store, assembly.app.clock),
    )
    model = config.server_model()
    server = new_grpc_server(section, [interceptor], model=model, reuse_port=shared)
    app = assembly.app
    enrolment = EnrolmentServicer(app, assembly.readers)
    servicers: list[tuple[Callable[[Any, Any], None], object]] = [
        (enrolment_pb2_grpc.add_EnrolmentServiceServicer_to_server, enrolment),
        (device_pb2_grpc.add_DeviceServiceServicer_to_server, DeviceServicer(app)),
        (validation_pb2_grpc.add_ValidationServiceServicer_to_server, ValidationServicer(app)),
        (admin_pb2_grpc.add_AdminServiceServicer_to_server, AdminServicer(app)),
        (oob_pb2_grpc.add_OobServiceServicer_to_server, OobServicer(app)),
        (grid_pb2_grpc.add_GridCardServiceServicer_to_server, GridCardServicer(app)),
    ]
    for add, servicer in servicers:
        add(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    heartbeat = None if worker is None else WorkerHeartbeat(worker, section.health_interval_seconds)
    probes = {"hsm": lambda: _probe_hsm(assembly), "store": assembly.store.ping}
    if heartbeat is not None:
        probes["processes"] = heartbeat.probe
    monitor = HealthMonitor(
        health_servicer,
        probes,
        services=SERVICE_NAMES,
        interval_seconds=section.health_interval_seconds,
        metrics=metrics,
        scoped={"crl": (assembly.crls.check_current, (ENROLMENT_SERVICE,))},
        others=("processes",),
    )
    assembly.crls.on_change(metrics.show_crls)
    tls = None if section.insecure else ServerTls(section)
    port = bind(server, section, tls, shared=shared)
    refresher = CrlRefresher(assembly.crls, config.card)
    radius = None
    if config.radius.enabled:
        with _listening(server, "radius.port"):
            radius = RadiusServer(
                config.radius,
                app,
                metrics,
                healthy=lambda: monitor.serving(VALIDATION_SERVICE),
                reuse_port=shared,
                loop=server.loop if isinstance(server, EventLoopServer) else None,
            )
    metrics_port = None
    if config.metrics.enabled:
        with _listening(server, "metrics.port"):
            metrics_port = metrics.serve_http(config.metrics.address, config.metrics.port)
    http = None
    if config.http.enabled:
        with _listening(server, "http.port"):
            api = api_for(interceptor, servicers)
            http = start_http_server(config.http, section, api, reuse_port=shared)
    monitor.start()
    refresher.start()
    server.start()
    if radius is not None:
        radius.start()
    if heartbeat is not None:
        heartbeat.serving()
    log.info(
        "serving" if worker is None else "process serving",
        extra={
            "fields": {
                "address": section.address,
                "port": port,
                "tls": not section.insecure,
                "model": model.value,
                "metrics_port": metrics_port,
                "store": describe_store_url(config.store.url),
                "http_port": http.port if http is not None else None,
                "radius_port": radius.port if radius is not None else None,
            }
        },
    )
    return RunningServer(
        server,
        port,
        assembly,
        monitor,
        metrics,
        enrolment,
        tls,
        refresher,
        metrics_port,
        http,
        radius,
    )


@contextmanager
def _listening(server: grpc.Server, key: str) -> Iterator[None]:
    """A listener opened in the block: a port in use, or an address it cannot listen on, ends
    the start-up with one line naming `key` (the gRPC server, bound already, is stopped)."""
    try:
        yield
    except OSError as exc:
        server.stop(None)
        if exc.errno == errno.EADDRINUSE:
            raise port_taken(key) from None
        raise cannot_listen(key) from None


def new_grpc_server(
    section: ServerSection,
    interceptors: Sequence[grpc.ServerInterceptor],
    *,
    model: ServerModel,
    reuse_port: bool = False,
) -> grpc.Server:
    """The gRPC server every otphsm endpoint runs on (the benchmark's do-nothing servicer too,
    so the two are served the same way): `model`'s (`ServiceConfig.server_model`), a thread
    pool of `max_workers`, the message limit; `reuse_port` for one of several server
    processes sharing the port."""
    options = [
        ("grpc.max_receive_message_length", section.max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    if model is ServerModel.AUTO:
        raise ValueError("decide server.model first (ServiceConfig.server_model)")
    if model is ServerModel.EVENT_LOOP:
        return EventLoopServer(
            max_workers=section.max_workers,
            interceptors=interceptors,
            options=options,
            on_loop=checks_code,
        )
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=section.max_workers, thread_name_prefix="rpc"),
        interceptors=list(interceptors),
        options=options,
    )


def _probe_hsm(assembly: Assembly) -> None:
    """A real operation with the pepper key: a cached key handle alone would not notice a
    token that was removed."""
    assembly.vault.keyed_digest(b"otphsm health probe")


def bind(
    server: grpc.Server,
    section: ServerSection,
    tls: ServerTls | None = None,
    *,
    shared: bool = False,
) -> int:
    """Listen on the configured address: mTLS (client certificates required) unless insecure;
    `tls` (default: read from `section`) is what SIGHUP reloads. A port in use is a
    `ConfigurationError` naming `server.port` (checked first, so gRPC logs nothing of its own;
    not when `shared`: the supervising parent holds the port for its processes)."""
    if not shared and in_use(section.address, section.port):
        raise port_taken("server.port")
    target = f"{section.address}:{section.port}"
    try:
        if section.insecure:
            port = server.add_insecure_port(target)
        else:
            port = server.add_secure_port(target, (tls or ServerTls(section)).credentials())
    except RuntimeError:  # grpc's "Failed to bind to address": no reason given
        port = 0
    if port == 0:
        raise cannot_listen("server.port")
    return port


def _run_until_stopped(
    running: RunningServer, wake: threading.Event, received: list[signal.Signals]
) -> None:
    """Until SIGTERM or SIGINT; each SIGHUP reloads (in this thread, not the handler)."""
    while True:
        wake.wait()
        wake.clear()
        while received:
            signum = received.pop(0)
            log.info("signal received", extra={"fields": {"signal": signum.name}})
            if signum is not signal.SIGHUP:
                return
            running.reload()


def _freeze_start_up_objects() -> None:
    """What start-up made lives as long as the process (modules, the assembly, gRPC's
    machinery): moved out of the cyclic garbage collector's reach, its full passes walk only
    what serving made since: ~4 ms with the GIL held, not 50-70 ms (README, Benchmarks)."""
    gc.collect()
    gc.freeze()


def serve(
    config_path: Path,
    *,
    write_point_hook: Callable[[str], None] | None = None,
    worker: Worker | None = None,
) -> int:
    """`otphsm serve`: run until SIGTERM or SIGINT, then shut down gracefully; with
    `server.processes` > 1, supervise that many `worker` processes doing so.
    `write_point_hook`: test only (`App.write_point_hook`), never set in production."""
    config = load_config(config_path)
    process = None if worker is None else worker.index + 1
    configure_logging(config.server.log_level, config.server.log_format, process=process)
    count = process_count(config.server.processes)
    if worker is None and count > 1:
        if write_point_hook is not None:
            raise ConfigurationError("server.processes must be 1 with a write-point hook (tests)")
        return supervise(config_path, config, count)
    if worker is not None:
        follow_parent(worker.parent)
    wake = threading.Event()
    received: list[signal.Signals] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum))
        wake.set()

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    try:
        assembly = assemble(config, write_point_hook=write_point_hook)
        if worker is None:
            prepare(assembly, config)
        if write_point_hook is not None:
            log.warning("TEST ONLY: a write-point hook is installed (crash tests)")
        try:
            running = start_server(config, assembly, worker=worker)
        except BaseException:
            assembly.close()
            raise
        _freeze_start_up_objects()
        try:
            _run_until_stopped(running, wake, received)
        finally:
            running.stop(config.server.grace_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
