"""The gRPC server: servicers, interceptor, TLS, health, reflection, metrics; and `serve`, which
runs it until SIGTERM/SIGINT and then shuts down gracefully."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from otphsm.core.app.seeds import sweep_orphan_seeds
from otphsm.core.seeds import SeedStorage
from otphsm.service.assembly import Assembly, assemble
from otphsm.service.auth import Authenticator
from otphsm.service.config import ServerSection, ServiceConfig, load_config
from otphsm.service.health import HealthMonitor
from otphsm.service.interceptor import ServiceInterceptor
from otphsm.service.logs import configure_logging
from otphsm.service.metrics import Metrics
from otphsm.service.radius import RadiusServer
from otphsm.service.ratelimit import FailureRateLimiter
from otphsm.service.rpcs import SERVICE_NAMES
from otphsm.service.servicers import (
    AdminServicer,
    DeviceServicer,
    EnrolmentServicer,
    ValidationServicer,
)
from otphsm.service.servicers.grid import GridCardServicer
from otphsm.service.servicers.oob import OobServicer
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
    metrics_port: int | None = None
    radius: RadiusServer | None = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight ones finish within the grace period, then close
        the HSM and the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down", extra={"fields": {"grace_seconds": grace_seconds}})
        self.health.stop()
        self.enrolment.close()
        if self.radius is not None:
            self.radius.stop(grace_seconds)
        self.server.stop(grace_seconds).wait()
        self.metrics.close()
        self.assembly.close()
        log.info("stopped")


def start_server(
    config: ServiceConfig, assembly: Assembly, *, metrics: Metrics | None = None
) -> RunningServer:
    """Bind, start, and begin health checks. The assembly is closed by `RunningServer.stop`."""
    section = config.server
    metrics = metrics or Metrics()
    if section.insecure:
        log.warning(
            "INSECURE MODE: no TLS, no client certificates; roles come from request metadata. "
            "For local development only."
        )
    server = new_grpc_server(
        section,
        [
            ServiceInterceptor(
                Authenticator(insecure=section.insecure),
                metrics,
                FailureRateLimiter(config.ratelimit, assembly.store, assembly.app.clock),
            )
        ],
    )
    app = assembly.app
    enrolment = EnrolmentServicer(app, assembly.readers)
    enrolment_pb2_grpc.add_EnrolmentServiceServicer_to_server(enrolment, server)
    device_pb2_grpc.add_DeviceServiceServicer_to_server(DeviceServicer(app), server)
    validation_pb2_grpc.add_ValidationServiceServicer_to_server(ValidationServicer(app), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(app), server)
    oob_pb2_grpc.add_OobServiceServicer_to_server(OobServicer(app), server)
    grid_pb2_grpc.add_GridCardServiceServicer_to_server(GridCardServicer(app), server)
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
    monitor = HealthMonitor(
        health_servicer,
        {"hsm": lambda: _probe_hsm(assembly), "store": assembly.store.ping},
        services=SERVICE_NAMES,
        interval_seconds=section.health_interval_seconds,
        metrics=metrics,
    )
    port = bind(server, section)
    radius = None
    if config.radius.enabled:
        radius = RadiusServer(config.radius, app, metrics, healthy=lambda: not monitor.failing)
    metrics_port = None
    if config.metrics.enabled:
        metrics_port = metrics.serve_http(config.metrics.address, config.metrics.port)
    monitor.start()
    server.start()
    if radius is not None:
        radius.start()
    log.info(
        "serving",
        extra={
            "fields": {
                "address": section.address,
                "port": port,
                "tls": not section.insecure,
                "metrics_port": metrics_port,
                "radius_port": radius.port if radius is not None else None,
            }
        },
    )
    return RunningServer(server, port, assembly, monitor, metrics, enrolment, metrics_port, radius)


def new_grpc_server(
    section: ServerSection, interceptors: Sequence[grpc.ServerInterceptor]
) -> grpc.Server:
    """The gRPC server every otphsm endpoint runs on (the benchmark's do-nothing servicer too,
    so the two are served the same way): a thread pool of `max_workers`, the message limit."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=section.max_workers, thread_name_prefix="rpc"),
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", section.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )


def _probe_hsm(assembly: Assembly) -> None:
    """A real operation with the pepper key: a cached key handle alone would not notice a
    token that was removed."""
    assembly.vault.keyed_digest(b"otphsm health probe")


def bind(server: grpc.Server, section: ServerSection) -> int:
    """Listen on the configured address: mTLS (client certificates required) unless insecure."""
    target = f"{section.address}:{section.port}"
    if section.insecure:
        port = server.add_insecure_port(target)
    else:
        credentials = grpc.ssl_server_credentials(
            [(Path(section.tls_key).read_bytes(), Path(section.tls_cert).read_bytes())],
            root_certificates=Path(section.tls_client_ca).read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port(target, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {target}")
    return port


def _sweep_orphan_seeds(assembly: Assembly) -> None:
    """Resident seeds left by a unit of work that never committed (a crash) are destroyed
    before serving; the HSM token must belong to this deployment's database alone."""
    try:
        destroyed = sweep_orphan_seeds(assembly.app, "otphsm serve")
    except BaseException:
        assembly.close()
        raise
    if destroyed:
        log.warning("orphan resident seeds destroyed", extra={"fields": {"count": destroyed}})


def serve(config_path: Path, *, write_point_hook: Callable[[str], None] | None = None) -> int:
    """`otphsm serve`: run until SIGTERM or SIGINT, then shut down gracefully.
    `write_point_hook`: test only (`App.write_point_hook`), never set in production."""
    config = load_config(config_path)
    configure_logging(config.server.log_level, config.server.log_format)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assembly = assemble(config, write_point_hook=write_point_hook)
        if config.hsm.seed_storage is SeedStorage.RESIDENT:
            _sweep_orphan_seeds(assembly)
        if write_point_hook is not None:
            log.warning("TEST ONLY: a write-point hook is installed (crash tests)")
        try:
            running = start_server(config, assembly)
        except BaseException:
            assembly.close()
            raise
        try:
            stop.wait()
        finally:
            running.stop(config.server.grace_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
