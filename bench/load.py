"""The load generator: separate processes (multiprocessing, spawn), each with its own channel per
target and several client threads calling ValidationService.Verify over mTLS: over gRPC, over
the HTTP/JSON API (`protocol="http"`: `POST /v1/codes:verify`, one keep-alive HTTPS connection per
thread), or over RADIUS (`protocol="radius"`: each thread a NAS sending Access-Requests,
`radius_client.py`).

Closed loop (`rate=None`): every thread sends its next request as soon as the last answered —
the peak rate. Open loop (`rate=R`): requests are due on a schedule fixed in advance and
each latency is measured from when the request was due, so a server falling behind shows up in
the figures (no coordinated omission). The schedule (`arrivals`): "poisson" (the default), each
client's requests at random independent moments, R per second in all, as many independent users
send them; "even", evenly spaced at R per second; "lockstep", every client at the same moments,
R / clients times a second (the schedule of the benchmarks until 2026-12-06 13:00Z: bursts of
processes x threads requests at once).

Tokens are HOTP: each thread owns its tokens and their counters, so a valid code is always the
next one and no two threads race on a token. A wrong code is a well-formed code outside the
token's whole window (look-ahead and look-back), found once per token.
"""

from __future__ import annotations

import hmac
import http.client
import json
import multiprocessing
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from otphsm.core.otp import hotp
from otphsm.v1 import common_pb2, validation_pb2, validation_pb2_grpc

WINDOW = 10
"""The server's HOTP look-ahead and look-back: a wrong code must be outside both."""

BenchToken = tuple[str, bytes, int]
"""(serial, secret known to the benchmark, next counter)."""


@dataclass
class LoadSpec:
    targets: list[str]
    tls: tuple[str, str, str]
    kind: str
    """"valid" or "wrong"."""
    tokens: list[BenchToken]
    threads: int
    warmup: float
    duration: float
    rate: float | None = None
    """Requests per second for this process (open loop); None: as fast as answered."""
    start_at: float = 0.0
    protocol: str = "grpc"
    """"grpc" (targets are host:port of the gRPC server), "http" (of the HTTP/JSON API) or
    "radius" (of the RADIUS port)."""
    radius_secret: str = ""
    connections: str = "process"
    """gRPC: one connection per "process" (the default) or per "thread" (so that the kernel
    spreads them over the server processes sharing a port)."""
    arrivals: str = "poisson"
    """The open loop's schedule: "poisson", "even" or "lockstep" (the module's docstring)."""
    first_client: int = 0
    """The index of this process's first client thread among all the load's clients."""
    clients: int = 1
    """Client threads in the whole load (every process's)."""


Call = Callable[[str, str], str]
"""(serial, code) → the result's name (VERIFY_RESULT_OK, ...) or "rpc:CODE" / "http:STATUS"."""


@dataclass
class LoadResult:
    completed: int = 0
    """Answers to requests due inside the measured window."""
    answered: int = 0
    """Every answer, warm-up included (for CPU per request)."""
    duration: float = 0.0
    latencies: list[float] = field(default_factory=list)
    results: Counter[str] = field(default_factory=Counter)
    counters: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    """CPU time of the load generator's processes from the start of the warm-up to the end."""
    wall_seconds: float = 0.0
    """Wall time of that span (the longest of the processes')."""

    @property
    def cores(self) -> float:
        """CPU cores the load generator used while it ran."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.duration if self.duration else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def merge(self, other: LoadResult) -> None:
        self.completed += other.completed
        self.answered += other.answered
        self.duration = max(self.duration, other.duration)
        self.latencies.extend(other.latencies)
        self.results.update(other.results)
        self.counters.update(other.counters)
        self.cpu_seconds += other.cpu_seconds
        self.wall_seconds = max(self.wall_seconds, other.wall_seconds)


def _mac(secret: bytes) -> Any:
    return lambda message: hmac.new(secret, message, "sha1").digest()


def wrong_code(secret: bytes, counter: int) -> str:
    mac = _mac(secret)
    window = {hotp(mac, c, 6) for c in range(max(0, counter - WINDOW), counter + WINDOW + 1)}
    candidate = 0
    while f"{candidate:06d}" in window:
        candidate += 1
    return f"{candidate:06d}"


def _grpc_call(stub: validation_pb2_grpc.ValidationServiceStub) -> Call:
    def call(serial: str, code: str) -> str:
        try:
            answer = stub.Verify(validation_pb2.VerifyRequest(serial=serial, code=code), timeout=30)
        except grpc.RpcError as error:
            return f"rpc:{error.code().name}"
        return common_pb2.VerifyResult.Name(answer.result)

    return call


def _http_call(target: str, tls: ssl.SSLContext) -> Call:
    host, _, port = target.rpartition(":")
    connection = http.client.HTTPSConnection(host, int(port), context=tls, timeout=30)
    headers = {"Content-Type": "application/json"}

    def call(serial: str, code: str) -> str:
        body = json.dumps({"serial": serial, "code": code})
        connection.request("POST", "/v1/codes:verify", body, headers)
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            return f"http:{answer.status}"
        return str(json.loads(data)["result"])

    return call


def schedule(
    arrivals: str, begin: float, rate: float, client: int, clients: int
) -> Iterator[float]:
    """When one client's requests are due, at `rate` per second for this client; `client` (of
    `clients`) places it among the others."""
    if arrivals == "poisson":
        draw = random.Random(client)  # the same schedule run after run
        due = begin
        while True:
            due += draw.expovariate(rate)
            yield due
    if arrivals not in ("even", "lockstep"):
        raise ValueError(f"unknown arrivals: {arrivals!r}")
    phase = client / clients if arrivals == "even" else 0.0
    sent = 0
    while True:
        yield begin + (sent + phase) / rate
        sent += 1


def _client_thread(
    call: Call,
    spec: LoadSpec,
    tokens: list[list[Any]],
    begin: float,
    dues: Iterator[float] | None,
    out: LoadResult,
    lock: threading.Lock,
) -> None:
    """`dues`: when the requests are due (open loop); None: closed loop."""
    measure_from = begin + spec.warmup
    end = measure_from + spec.duration
    wrong: dict[str, str] = {}
    latencies: list[float] = []
    results: Counter[str] = Counter()
    completed = 0
    answered = 0
    index = 0
    while True:
        due = next(dues) if dues else time.perf_counter()
        if due >= end:
            break
        if dues:
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        token = tokens[index % len(tokens)]
        index += 1
        serial, secret, counter = token
        if spec.kind == "valid":
            code = hotp(_mac(secret), counter, 6)
            token[2] = counter + 1  # sent: advance whatever the answer (look-ahead covers it)
        else:
            code = wrong.get(serial) or wrong.setdefault(serial, wrong_code(secret, counter))
        started = time.perf_counter()
        outcome = call(serial, code)
        finished = time.perf_counter()
        answered += 1
        if due >= measure_from and finished <= end:
            completed += 1
            latencies.append(finished - (due if dues else started))
            results[outcome] += 1
    with lock:
        out.completed += completed
        out.answered += answered
        out.latencies.extend(latencies)
        out.results.update(results)


def _worker(spec: LoadSpec, queue: Any) -> None:
    channels: list[grpc.Channel] = []
    closers: list[Callable[[], None]] = []
    if spec.protocol == "radius":
        from radius_client import RadiusCaller

        nases = [
            RadiusCaller(spec.targets[i % len(spec.targets)], spec.radius_secret)
            for i in range(spec.threads)
        ]
        calls: list[Call] = list(nases)
        closers = [nas.close for nas in nases]
    elif spec.protocol == "http":
        tls = ssl.create_default_context(cafile=spec.tls[0])
        tls.load_cert_chain(spec.tls[1], spec.tls[2])
        calls = [_http_call(spec.targets[i % len(spec.targets)], tls) for i in range(spec.threads)]
    else:
        ca, cert, key = (Path(p).read_bytes() for p in spec.tls)
        credentials = grpc.ssl_channel_credentials(ca, key, cert)
        if spec.connections == "thread":  # a subchannel pool of its own: a connection each
            own = [("grpc.use_local_subchannel_pool", 1)]
            targets = [spec.targets[i % len(spec.targets)] for i in range(spec.threads)]
            channels = [grpc.secure_channel(t, credentials, options=own) for t in targets]
        else:
            channels = [grpc.secure_channel(target, credentials) for target in spec.targets]
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=30)
        stubs = [validation_pb2_grpc.ValidationServiceStub(c) for c in channels]
        calls = [_grpc_call(stubs[i % len(stubs)]) for i in range(spec.threads)]
        closers = [channel.close for channel in channels]
    owned: list[list[list[Any]]] = [[] for _ in range(spec.threads)]
    for i, token in enumerate(spec.tokens):
        owned[i % spec.threads].append(list(token))
    out = LoadResult(duration=spec.duration)
    lock = threading.Lock()
    time.sleep(max(0.0, spec.start_at - time.time()))
    begin = time.perf_counter()
    cpu_before = time.process_time()

    def dues(thread: int) -> Iterator[float] | None:
        if not spec.rate:
            return None
        client = spec.first_client + thread
        return schedule(spec.arrivals, begin, spec.rate / spec.threads, client, spec.clients)

    threads = [
        threading.Thread(
            target=_client_thread,
            args=(calls[i], spec, owned[i], begin, dues(i), out, lock),
        )
        for i in range(spec.threads)
        if owned[i]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.cpu_seconds = time.process_time() - cpu_before
    out.wall_seconds = time.perf_counter() - begin
    out.counters = {t[0]: t[2] for part in owned for t in part}
    for close in closers:
        close()
    queue.put(out)


def run_load(
    targets: list[str],
    tls: tuple[str, str, str],
    kind: str,
    tokens: list[BenchToken],
    *,
    processes: int,
    threads: int,
    warmup: float,
    duration: float,
    rate: float | None = None,
    protocol: str = "grpc",
    radius_secret: str = "",
    connections: str = "process",
    arrivals: str = "poisson",
) -> LoadResult:
    """Spread `tokens` over `processes` x `threads` clients; the merged result."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 1.5 + 0.3 * processes  # after every process is up
    specs = [
        LoadSpec(
            targets=targets[p % len(targets) :] + targets[: p % len(targets)],
            tls=tls,
            kind=kind,
            tokens=tokens[p::processes],
            threads=threads,
            warmup=warmup,
            duration=duration,
            rate=rate / processes if rate else None,
            start_at=start_at,
            protocol=protocol,
            radius_secret=radius_secret,
            connections=connections,
            arrivals=arrivals,
            first_client=p * threads,
            clients=processes * threads,
        )
        for p in range(processes)
    ]
    workers = [context.Process(target=_worker, args=(spec, queue)) for spec in specs]
    for worker in workers:
        worker.start()
    total = LoadResult(duration=duration)
    for _ in workers:
        total.merge(queue.get(timeout=warmup + duration + 120))
    for worker in workers:
        worker.join(30)
    return total
