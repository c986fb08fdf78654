"""A fault-injecting `SessionSource`: what network HSMs do to their clients, on demand.

Wraps a real source; the sessions and keys it hands out are proxies that consult a
`FaultPlan` before every call. Session-loss faults also really close the underlying session,
so handles held from it die exactly as they would on a real device.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e

from otphsm.hsm.backend import SessionSource
from otphsm.hsm.errors import EXCEPTION_FOR_CODE, RECOVERABLE

CKR_SESSION_HANDLE_INVALID = 0xB3
CKR_DEVICE_REMOVED = 0x32
CKR_TOKEN_NOT_PRESENT = 0xE0
CKR_DEVICE_MEMORY = 0x31

_CREATING_METHODS = {"generate_key", "create_object", "unwrap_key", "derive_key", "copy"}


@dataclass
class FaultPlan:
    """Knobs a test turns while the engine runs. Thread-safe."""

    latency_seconds: float = 0.0
    idle_timeout_seconds: float | None = None
    max_session_objects: int | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    injected: int = 0
    calls: int = 0
    _pending: list[int] = field(default_factory=list)
    _every: tuple[int, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, ckr: int = CKR_SESSION_HANDLE_INVALID) -> None:
        """The next `count` PKCS#11 calls fail with `ckr`."""
        with self._lock:
            self._pending.extend([ckr] * count)

    def fail_every(self, period: int, ckr: int = CKR_SESSION_HANDLE_INVALID) -> None:
        """Every `period`-th call fails with `ckr` until `clear()`."""
        with self._lock:
            self._every = (period, ckr)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self._every = None
            self.latency_seconds = 0.0
            self.idle_timeout_seconds = None
            self.max_session_objects = None

    def _next_fault(self) -> int | None:
        with self._lock:
            self.calls += 1
            if self._pending:
                self.injected += 1
                return self._pending.pop(0)
            if self._every and self.calls % self._every[0] == 0:
                self.injected += 1
                return self._every[1]
            return None


class _SessionState:
    def __init__(self, session: pkcs11.Session, plan: FaultPlan) -> None:
        self.session = session
        self.plan = plan
        self.last_used = plan.clock()
        self.live_objects = 0

    def before_call(self, method: str) -> None:
        plan = self.plan
        if plan.latency_seconds:
            plan.sleep(plan.latency_seconds)
        now = plan.clock()
        if (
            plan.idle_timeout_seconds is not None
            and now - self.last_used > plan.idle_timeout_seconds
        ):
            self.kill()  # the real call below now fails as on an HSM that expired the session
        self.last_used = now
        code = plan._next_fault()
        if code is not None:
            exc_class = EXCEPTION_FOR_CODE[code]
            if issubclass(exc_class, RECOVERABLE):
                self.kill()
            raise exc_class()
        if (
            method in _CREATING_METHODS
            and plan.max_session_objects is not None
            and self.live_objects >= plan.max_session_objects
        ):
            raise p11e.DeviceMemory()

    def kill(self) -> None:
        with contextlib.suppress(p11e.PKCS11Error):
            self.session.close()


class _Proxy:
    """Forwards to a python-pkcs11 session or object, through the plan."""

    def __init__(self, target: Any, state: _SessionState) -> None:
        self._target = target
        self._state = state

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute) or name == "close":
            return attribute
        state = self._state

        def call(*args: Any, **kwargs: Any) -> Any:
            state.before_call(name)
            args = tuple(_unproxy(a) for a in args)
            kwargs = {k: _unproxy(v) for k, v in kwargs.items()}
            result = attribute(*args, **kwargs)
            if name in _CREATING_METHODS:
                state.live_objects += 1
            elif name == "generate_keypair":
                state.live_objects += 2
            elif name == "destroy":
                state.live_objects -= 1
            return _proxy_result(result, state)

        return call

    def __getitem__(self, key: Any) -> Any:
        self._state.before_call("__getitem__")
        return self._target[key]

    def __iter__(self) -> Any:
        return iter(self._target)


def _unproxy(value: Any) -> Any:
    return value._target if isinstance(value, _Proxy) else value


def _proxy_result(result: Any, state: _SessionState) -> Any:
    if isinstance(result, pkcs11.Object):
        return _Proxy(result, state)
    if isinstance(result, tuple):
        return tuple(_proxy_result(r, state) for r in result)
    if isinstance(result, pkcs11.Session):
        return _Proxy(result, state)
    if hasattr(result, "__next__"):
        return (_proxy_result(r, state) for r in result)
    return result


class FaultInjectingSource:
    def __init__(self, inner: SessionSource, plan: FaultPlan | None = None) -> None:
        self.inner = inner
        self.plan = plan or FaultPlan()
        self.sessions_opened = 0

    @property
    def lock(self) -> threading.RLock:
        return self.inner.lock

    @property
    def epoch(self) -> int:
        return self.inner.epoch

    def open_session(
        self, token_label: str, pin: str, *, security_officer: bool = False
    ) -> pkcs11.Session:
        session = self.inner.open_session(token_label, pin, security_officer=security_officer)
        self.sessions_opened += 1
        proxy: pkcs11.Session = _Proxy(session, _SessionState(session, self.plan))  # type: ignore[assignment]
        return proxy

    def reload(self) -> None:
        self.inner.reload()

    def logged_in(self, session: pkcs11.Session) -> bool:
        return self.inner.logged_in(_unproxy(session))
