"""Helpers of the fault tier: HOTP tokens whose seeds the test knows (imported into the HSM, as a
key fob's PSKC file would bring them), and a load loop that keeps verifying them through faults
while recording every answer, so at-most-once and no-counter-goes-back can be checked after.
"""

from __future__ import annotations

import hmac
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from otphsm.client import wire
from otphsm.core.app.context import App
from otphsm.core.otp import HashAlgorithm, hotp
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState
from otphsm.simulators.deployment import ServerProcess, start_serve, write_config
from otphsm.v1 import common_pb2, validation_pb2, validation_pb2_grpc

OK = common_pb2.VERIFY_RESULT_OK
REPLAYED = common_pb2.VERIFY_RESULT_REPLAYED
CITIZEN = "RSSMRA80A01L378S"


@dataclass
class HotpToken:
    serial: str
    secret: bytes

    def code(self, counter: int) -> str:
        return hotp(lambda m: hmac.new(self.secret, m, "sha1").digest(), counter, 6)

    def wrong_code(self, counter: int, window: int = 10) -> str:
        taken = {self.code(c) for c in range(max(0, counter - window), counter + window + 1)}
        return next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in taken)


def add_hotp_tokens(
    app: App, count: int, prefix: str = "FLT", kind: TokenKind = TokenKind.PHYSICAL
) -> list[HotpToken]:
    """Active HOTP tokens with real wrapped seeds the test knows, for one citizen."""
    tokens = []
    for index in range(count):
        secret = os.urandom(20)
        seed = app.hsm.import_seed(secret, HashAlgorithm.SHA1)
        serial = f"{prefix}-{index:04d}"
        app.store.insert_token(
            Token(
                serial=serial,
                codice_fiscale=CITIZEN,
                kind=kind,
                params=OtpParameters(mode=OtpMode.HOTP),
                seed=seed,
                state=TokenState.ACTIVE,
                created_at=app.now(),
                activated_at=app.now(),
            )
        )
        tokens.append(HotpToken(serial, secret))
    return tokens


def verifier_channel(pki: Any, port: int, role: str = "verifier") -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(),
        (pki.directory / f"{role}-key.pem").read_bytes(),
        (pki.directory / f"{role}.pem").read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


@dataclass
class LoadRecord:
    """What the load saw: codes accepted, answers by kind, and the codes whose outcome is
    unknown (an error answered: the write may or may not have committed)."""

    accepted: list[tuple[str, int]] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    wrong_accepted: list[tuple[str, str]] = field(default_factory=list)
    last_sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str) -> None:
        with self.lock:
            self.answers[kind] += 1


class VerifyLoad:
    """Threads that each own some tokens and verify their next codes, over whichever of the
    `targets` (callables returning a stub) answers; every `wrong_every`-th request sends a
    wrong code instead. A code whose answer was an error is sent again until it is answered
    (OK or REPLAYED), so a code that committed without its answer is detected, never lost."""

    def __init__(
        self,
        stubs: list[Any],
        tokens: list[HotpToken],
        threads: int = 4,
        wrong_every: int = 0,
        deadline_seconds: float = 60.0,
    ) -> None:
        self.stubs = stubs
        self.tokens = tokens
        self.wrong_every = wrong_every
        self.record = LoadRecord()
        self.counters = dict.fromkeys((t.serial for t in tokens), 0)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + deadline_seconds
        self._threads = [
            threading.Thread(target=self._run, args=(i, tokens[i::threads]), daemon=True)
            for i in range(threads)
        ]

    def start(self) -> VerifyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadRecord:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
            assert not thread.is_alive(), "a load thread is stuck"
        return self.record

    def wait_for(self, answers: int, timeout: float = 30.0) -> None:
        """Block until `answers` more answers (of any kind) came back."""
        target = sum(self.record.answers.values()) + answers
        deadline = time.monotonic() + timeout
        while sum(self.record.answers.values()) < target:
            assert time.monotonic() < deadline, f"load stalled: {self.record.answers}"
            time.sleep(0.02)

    def _run(self, index: int, owned: list[HotpToken]) -> None:
        sent = 0
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            for token in owned:
                if self._stop.is_set():
                    return
                sent += 1
                stub = self.stubs[(index + sent) % len(self.stubs)]()
                if self.wrong_every and sent % self.wrong_every == 0:
                    self._send_wrong(stub, token)
                else:
                    self._send_valid(stub, token)

    def _send_valid(self, stub: Any, token: HotpToken) -> None:
        counter = self.counters[token.serial]
        self.record.last_sent[token.serial] = counter
        kind = self._call(stub, token.serial, token.code(counter))
        if kind == "OK":
            with self.record.lock:
                self.record.accepted.append((token.serial, counter))
        if kind in ("OK", "REPLAYED"):
            self.counters[token.serial] = counter + 1

    def _send_wrong(self, stub: Any, token: HotpToken) -> None:
        code = token.wrong_code(self.counters[token.serial])
        if self._call(stub, token.serial, code) == "OK":
            with self.record.lock:
                self.record.wrong_accepted.append((token.serial, code))

    def _call(self, stub: Any, serial: str, code: str) -> str:
        try:
            answer = stub.Verify(validation_pb2.VerifyRequest(serial=serial, code=code), timeout=10)
            kind: str = wire.verify_result(answer.result).name
        except grpc.RpcError as error:
            kind = f"rpc:{error.code().name}"
            time.sleep(0.02)  # the server is down or busy: do not spin
        self.record.note(kind)
        return kind


def check_at_most_once(record: LoadRecord, tokens: dict[str, int]) -> None:
    """No code accepted twice; every token's counter is past every code it accepted and not
    past the last code sent (`tokens`: serial → the stored moving factor)."""
    duplicates = [code for code, n in Counter(record.accepted).items() if n > 1]
    assert not duplicates, f"codes accepted twice: {duplicates}"
    assert not record.wrong_accepted, f"wrong codes accepted: {record.wrong_accepted}"
    for serial, counter in record.accepted:
        assert tokens[serial] > counter, (serial, counter, tokens[serial])
    for serial, last in record.last_sent.items():
        assert tokens[serial] <= last + 1, (serial, last, tokens[serial])


def replay_all(
    stub: validation_pb2_grpc.ValidationServiceStub,
    accepted: list[tuple[str, int]],
    tokens: list[HotpToken],
    sample: int = 200,
) -> Counter[str]:
    """Send (up to `sample` of) the accepted codes again: none may be accepted."""
    by_serial = {t.serial: t for t in tokens}
    step = max(1, len(accepted) // sample)
    again: Counter[str] = Counter()
    for serial, counter in accepted[::step]:
        answer = stub.Verify(
            validation_pb2.VerifyRequest(serial=serial, code=by_serial[serial].code(counter)),
            timeout=10,
        )
        again[common_pb2.VerifyResult.Name(answer.result)] += 1
    assert again["VERIFY_RESULT_OK"] == 0, again
    return again


# --- `otphsm serve` processes on PostgreSQL ------------------------------------------------


def serve_configs(
    request: Any,
    tmp_path: Path,
    store_url: str,
    names: tuple[str, ...],
    verification: dict[str, int] | None = None,
) -> list[Path]:
    """One config file per replica: PostgreSQL, the run's SoftHSM token, port 0, no rate limit
    (the load sends many codes from one caller), no metrics endpoint; `verification`: keys of
    the `[verification]` section to set."""
    from support.service_fixtures import service_config

    configs = []
    for name in names:
        raw = service_config(
            tmp_path,
            request.getfixturevalue("softhsm"),
            request.getfixturevalue("dev_pki"),
            request.getfixturevalue("card_ca_files"),
            store_url,
        )
        raw["server"]["max_workers"] = 8
        raw["metrics"]["enabled"] = False
        raw["ratelimit"] = {"enabled": False}
        if verification:
            raw["verification"] = dict(verification)
        configs.append(write_config(tmp_path / f"replica-{name}.toml", raw))
    return configs


class Replica:
    """A `serve` process that can be killed and started again; `stub()` follows its port."""

    process: ServerProcess

    def __init__(self, config: Path, softhsm: Any, pki: Any) -> None:
        self.config = config
        self.softhsm = softhsm
        self.pki = pki
        self._stub: Any = None
        self.start()

    def start(self) -> None:
        self.process = start_serve(self.config, self.softhsm)
        port = self.process.wait_serving()
        self._stub = validation_pb2_grpc.ValidationServiceStub(verifier_channel(self.pki, port))

    def stub(self) -> Any:
        return self._stub

    def kill(self) -> None:
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait(10)

    def terminate(self) -> None:
        self.process.process.terminate()
        self.process.process.wait(30)

    def close(self) -> None:
        self.process.stop()


def stored_counters(app: App, tokens: list[HotpToken]) -> dict[str, int]:
    found = {t.serial: app.store.get_token(t.serial) for t in tokens}
    return {serial: token.moving_factor for serial, token in found.items() if token is not None}


def terminate_backends(admin: Any, store_url: str) -> int:
    """pg_terminate_backend on every connection of this test's store (its application_name)."""
    name = store_url.split("application_name=", 1)[1].split("&", 1)[0]
    row = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        (name,),
    ).fetchone()
    return int(row[0]) if row else 0
