"""The standard gRPC health service, driven by a background checker: NOT_SERVING while the HSM or
the database fails its probe, SERVING again as soon as both pass. A probe may be scoped to some
services: while it fails, those answer NOT_SERVING and the others (and the server as a whole,
"") keep SERVING: with no current CRL, enrolment stops and verification goes on. A probe may
also be about others (`others`: the other server processes of a set): its failure changes the
health answer but not this process's own `serving`, so its RADIUS front end keeps answering."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping

from grpc_health.v1 import health, health_pb2

from otphsm.hsm.errors import HsmError
from otphsm.service.metrics import Metrics

log = logging.getLogger("otphsm.health")

Probe = Callable[[], None]
"""Returns when the component is usable; raises when it is not."""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthMonitor:
    def __init__(
        self,
        servicer: health.HealthServicer,
        probes: Mapping[str, Probe],
        *,
        services: Iterable[str],
        interval_seconds: float,
        metrics: Metrics,
        scoped: Mapping[str, tuple[Probe, Collection[str]]] | None = None,
        others: Collection[str] = (),
    ) -> None:
        """`scoped`: probe name → (probe, the services its failure takes down alone);
        `others`: the names of the probes about other processes."""
        self.servicer = servicer
        self._probes = dict(probes)
        self._scope = {name: frozenset(services) for name, (_, services) in (scoped or {}).items()}
        self._probes.update({name: probe for name, (probe, _) in (scoped or {}).items()})
        self._services = ("", *services)
        self._others = frozenset(others)
        self._interval = interval_seconds
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: dict[str, str] = {}
        self._checks = 0
        self._checked = threading.Condition()

    @property
    def failing(self) -> dict[str, str]:
        """Component → why, for the components whose last probe failed."""
        return dict(self._failing)

    def serving(self, service: str) -> bool:
        """Whether no failing component of this process takes `service` down (a scoped probe
        takes down only the services it names)."""
        return not any(
            self._takes_down(name, service) for name in self._failing if name not in self._others
        )

    def _takes_down(self, component: str, service: str) -> bool:
        return component not in self._scope or service in self._scope[component]

    def check_now(self) -> bool:
        failing: dict[str, str] = {}
        for name, probe in self._probes.items():
            try:
                probe()
            except Exception as exc:
                failing[name] = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, HsmError):
                    self._metrics.hsm_errors.labels(type(exc).__name__).inc()
            self._metrics.component_up.labels(name).set(0 if name in failing else 1)
        self._report(failing)
        with self._checked:
            self._checks += 1
            self._checked.notify_all()
        return not failing

    def wait_for_checks(self, count: int, timeout: float) -> bool:
        """Block until `count` more checks ran (for tests and start-up)."""
        with self._checked:
            target = self._checks + count
            return self._checked.wait_for(lambda: self._checks >= target, timeout)

    def start(self) -> None:
        self.check_now()
        self._thread = threading.Thread(target=self._run, name="otphsm-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing and answer NOT_SERVING from now on (the server is going away)."""
        self._stop.set()
        self.servicer.enter_graceful_shutdown()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check_now()

    def _report(self, failing: dict[str, str]) -> None:
        for name in sorted(set(failing) - set(self._failing)):
            log.warning(
                "component unusable", extra={"fields": {"component": name, "why": failing[name]}}
            )
        for name in sorted(set(self._failing) - set(failing)):
            log.info("component usable again", extra={"fields": {"component": name}})
        self._failing = failing
        for service in self._services:
            down = any(self._takes_down(name, service) for name in failing)
            self.servicer.set(service, NOT_SERVING if down else SERVING)
