"""The one owner of the HSM login and session in a process.

Every PKCS#11 operation runs as `owner.run(action, op)`: under the module lock, on a live
logged-in session. When the session, the login or the device is lost, the owner drops the
session (and with it every handle derived from it: `generation` changes), reopens, logs in and
runs `op` again from the start, a bounded number of times. It never reuses a handle from an
older session, so a recovered call cannot answer with another key's result.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pkcs11
import pkcs11.exceptions as p11e

from otphsm.hsm.backend import ModuleSessionSource, SessionSource
from otphsm.hsm.config import HsmConfig
from otphsm.hsm.errors import (
    DEVICE_LOST,
    RECOVERABLE,
    HsmKeyMissing,
    HsmTokenNotFound,
    HsmUnavailable,
    ckr_of,
    translate,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionContext:
    session: pkcs11.Session
    generation: int
    """Identifies this session; handles cached under another generation are void."""


class HsmSessionOwner:
    def __init__(
        self,
        config: HsmConfig,
        source: SessionSource | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._source = source or ModuleSessionSource.for_module(config.module)
        self._sleep = sleep
        self._session: pkcs11.Session | None = None
        self._session_epoch = -1
        self._generation = 0
        self._ever_connected = False
        self.recoveries = 0
        """How many times a lost session was replaced (for metrics and tests)."""

    @property
    def generation(self) -> int:
        return self._generation

    def connect(self) -> None:
        """Open and log in now, so configuration errors surface at start-up."""
        self.run("connecting", lambda ctx: None)

    def run(self, action: str, op: Callable[[SessionContext], T]) -> T:
        """Run `op` on a live session; `action` names it in errors ("computing an HMAC")."""
        attempts = self.config.max_attempts
        with self._source.lock:
            last: BaseException | None = None
            for attempt in range(attempts):
                if attempt:
                    self._sleep(self.config.retry_backoff_seconds * 2 ** (attempt - 1))
                try:
                    return op(self._live_context())
                except HsmTokenNotFound as exc:
                    if not self._ever_connected:
                        raise
                    last = exc
                    self._drop_session(reload_module=True)
                except RECOVERABLE as exc:
                    last = exc
                    self._drop_session(reload_module=isinstance(exc, DEVICE_LOST))
                except (p11e.PKCS11Error, HsmKeyMissing) as exc:
                    # The module may have dropped the login under a live session (a logout
                    # elsewhere in the process, a token reset): its private objects then read
                    # as invalid handles or as missing keys. Log in again rather than report it.
                    if not self._login_lost():
                        if isinstance(exc, HsmKeyMissing):
                            raise
                        raise translate(exc, action) from exc
                    last = exc
                    self._drop_session(reload_module=False)
            code, name = ckr_of(last) if last is not None else (None, None)
            log.warning("HSM unavailable after %d attempts while %s (%s)", attempts, action, name)
            raise HsmUnavailable(
                f"the HSM did not recover within {attempts} attempts while {action}",
                ckr=code,
                ckr_name=name,
            ) from last

    def run_as_security_officer(
        self, so_pin: str, action: str, op: Callable[[pkcs11.Session], T]
    ) -> T:
        """Run `op` in an SO session. The user session is closed first: PKCS#11 allows only
        one kind of login per application at a time."""
        with self._source.lock:
            self._drop_session(reload_module=False)
            try:
                session = self._source.open_session(
                    self.config.token_label, so_pin, security_officer=True
                )
            except p11e.PKCS11Error as exc:
                raise translate(exc, action) from exc
            try:
                return op(session)
            except p11e.PKCS11Error as exc:
                raise translate(exc, action) from exc
            finally:
                _close_quietly(session)

    def close(self) -> None:
        with self._source.lock:
            self._drop_session(reload_module=False)

    def __enter__(self) -> HsmSessionOwner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _live_context(self) -> SessionContext:
        if self._session is not None and self._session_epoch != self._source.epoch:
            # The module was re-initialised by another owner: this handle number may now
            # belong to somebody else's session, so forget it without closing it.
            self._session = None
            self._generation += 1
        if self._session is None:
            epoch = self._source.epoch
            self._session = self._source.open_session(self.config.token_label, self.config.user_pin)
            self._session_epoch = epoch
            if self._ever_connected:
                self.recoveries += 1
                log.info("HSM session re-established on token %r", self.config.token_label)
            self._ever_connected = True
        return SessionContext(self._session, self._generation)

    def _login_lost(self) -> bool:
        session = self._session
        if session is None or self._session_epoch != self._source.epoch:
            return False
        return not self._source.logged_in(session)

    def _drop_session(self, *, reload_module: bool) -> None:
        if self._session is not None:
            if self._session_epoch == self._source.epoch:
                _close_quietly(self._session)
            self._session = None
        self._generation += 1
        if reload_module:
            self._source.reload()


def _close_quietly(session: pkcs11.Session) -> None:
    with contextlib.suppress(p11e.PKCS11Error):
        session.close()
