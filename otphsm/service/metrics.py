"""Prometheus metrics, in a registry of their own (one per server, so tests can run several).

Labels carry RPC names, status codes, results and error classes: never a serial, a codice
fiscale or anything secret.

With `server.processes` > 1 each server process writes its metrics to files in the directory
`PROMETHEUS_MULTIPROC_DIR` names (prometheus_client's multiprocess mode, chosen at import, so
set in the process's environment by the parent), and the parent alone serves /metrics: the
processes' counters and histograms summed (`serve_merged`); a gauge shows the lowest value
among the live processes (a component is up only if up in every one).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from otphsm.core.certificates import TrustStore

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    merged: bool = False
    """One of several server processes whose metrics the parent merges (multiprocess mode)."""

    def __post_init__(self) -> None:
        r = self.registry
        self.verifications = Counter(
            "otphsm_verifications",
            "Code checks by RPC and result (ok, wrong_code, replayed, expired, locked, ...).",
            ("rpc", "result"),
            registry=r,
        )
        self.rpc_latency = Histogram(
            "otphsm_rpc_duration_seconds",
            "Time to answer an RPC, by RPC.",
            ("rpc",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_errors = Counter(
            "otphsm_rpc_errors",
            "RPCs that ended in an error, by RPC and status code.",
            ("rpc", "code"),
            registry=r,
        )
        self.hsm_errors = Counter(
            "otphsm_hsm_errors",
            "HSM failures seen by RPCs and health checks, by error class.",
            ("error",),
            registry=r,
        )
        self.component_up = Gauge(
            "otphsm_component_up",
            "1 while the last health check of the component (hsm, store, crl) passed.",
            ("component",),
            registry=r,
            multiprocess_mode="livemin",
        )
        self.crl_next_update = Gauge(
            "otphsm_crl_next_update_timestamp_seconds",
            "nextUpdate of the CRL held for each trusted CA (Unix time); past it, the CA's cards "
            "are refused until a newer CRL arrives.",
            ("issuer",),
            registry=r,
            multiprocess_mode="livemin",
        )
        self.radius_requests = Counter(
            "otphsm_radius_requests",
            "RADIUS requests answered, by answer (accept, reject, challenge, cached, status).",
            ("answer",),
            registry=r,
        )
        self.radius_dropped = Counter(
            "otphsm_radius_dropped",
            "RADIUS packets dropped unanswered, by reason (malformed, unknown_client, "
            "no_message_authenticator, bad_message_authenticator, not_access_request, "
            "unhealthy, in_progress, overloaded, error).",
            ("reason",),
            registry=r,
        )
        self._endpoint = Endpoint()

    def show_crls(self, trust: TrustStore) -> None:
        """Set `crl_next_update` from the CRLs held (a holder's `on_change` listener)."""
        if not self.merged:  # multiprocess mode cannot clear: a CA no longer trusted stays
            self.crl_next_update.clear()
        for crl in trust.crls:
            if crl.next_update_utc is not None:
                issuer = crl.issuer.rfc4514_string()
                self.crl_next_update.labels(issuer).set(crl.next_update_utc.timestamp())

    def serve_http(self, address: str, port: int) -> int:
        """Expose /metrics on `address:port` (0: any free port); returns the bound port."""
        return self._endpoint.serve(self.registry, address, port)

    def close(self) -> None:
        self._endpoint.close()


def serve_merged(directory: Path, address: str, port: int) -> Endpoint:
    """/metrics on `address:port` for the server processes writing to `directory` (their
    `PROMETHEUS_MULTIPROC_DIR`); `Endpoint.port` is the bound port."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    endpoint = Endpoint()
    endpoint.serve(registry, address, port)
    return endpoint


def process_gone(directory: Path, pid: int) -> None:
    """A server process exited: its gauges leave the merged view (its counts stay)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


class Endpoint:
    """The /metrics HTTP server of a registry, in a thread of its own."""

    def __init__(self) -> None:
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def serve(self, registry: CollectorRegistry, address: str, port: int) -> int:
        self._http, self._thread = start_http_server(port, address, registry=registry)
        self.port = int(self._http.server_port)
        return self.port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
