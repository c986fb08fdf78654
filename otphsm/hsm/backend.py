"""Loading a PKCS#11 module and opening sessions on a token: the seam faults are injected at.

python-pkcs11 initialises modules without CKF_OS_LOCKING_OK, so SoftHSM runs without internal
locks while python-pkcs11 releases the GIL: two threads calling in at once crash the process.
Every call into a module therefore holds that module's process-wide lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import UserType

from otphsm.hsm.attributes import ATTRIBUTE_MAPPER
from otphsm.hsm.errors import EXCEPTION_FOR_CODE, HsmLibraryNotFound, HsmTokenNotFound, ckr_of

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Library

CKR_OK = 0x0
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKS_RO_USER_FUNCTIONS = 1
CKS_RW_USER_FUNCTIONS = 3
TOKEN_LOOKUPS = 10
TOKEN_LOOKUP_PAUSE_SECONDS = 0.02
"""A token lookup tried up to 10 times, 20 ms apart (`find_token`): a SoftHSM2 token being
rewritten by another process's login reads right again within one pause."""


class _CkSessionInfo(ctypes.Structure):
    _fields_ = (
        ("slotID", ctypes.c_ulong),
        ("state", ctypes.c_ulong),
        ("flags", ctypes.c_ulong),
        ("ulDeviceError", ctypes.c_ulong),
    )


class SessionSource(Protocol):
    """Opens logged-in sessions on a token of one loaded module."""

    @property
    def lock(self) -> threading.RLock:
        """Held around every call into the module, by every user of it in this process."""
        ...

    @property
    def epoch(self) -> int:
        """Bumped whenever the module is re-initialised; older sessions and handles are void."""
        ...

    def open_session(
        self, token_label: str, pin: str, *, security_officer: bool = False
    ) -> pkcs11.Session: ...

    def reload(self) -> None:
        """Finalize and re-initialise the module so it rescans its slots."""
        ...

    def logged_in(self, session: pkcs11.Session) -> bool:
        """Whether `session` is still in a user-functions state (C_GetSessionInfo)."""
        ...


class ModuleSessionSource:
    """The real thing: one per module path per process (see `for_module`)."""

    _instances: ClassVar[dict[str, ModuleSessionSource]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, module_path: str) -> None:
        self.module_path = module_path
        self._lock = threading.RLock()
        self._epoch = 0
        self._lib: Pkcs11Library | None = None
        self._c_login: Any = None
        self._c_get_session_info: Any = None
        self._pid = os.getpid()

    @classmethod
    def for_module(cls, module_path: str) -> ModuleSessionSource:
        with cls._instances_lock:
            source = cls._instances.get(module_path)
            if source is None:
                source = cls._instances[module_path] = cls(module_path)
            return source

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def epoch(self) -> int:
        return self._epoch

    def open_session(
        self, token_label: str, pin: str, *, security_officer: bool = False
    ) -> pkcs11.Session:
        with self._lock:
            library = self._library()
            try:
                token = self.find_token(token_label)
            except p11e.NoSuchToken:
                present = sorted(t.label for t in library.get_tokens())
                raise HsmTokenNotFound(
                    f"no token labelled {token_label!r} in {self.module_path} (present: "
                    f"{present or 'none'}): create it (`otphsm sim hsm init DIR` for SoftHSM2) "
                    "or fix hsm.token_label"
                ) from None
            session: pkcs11.Session = token.open(rw=True, attribute_mapper=ATTRIBUTE_MAPPER)
            self._login(session, pin, UserType.SO if security_officer else UserType.USER)
            return session

    def find_token(self, token_label: str) -> pkcs11.Token:
        """The token labelled `token_label`, looked up again a few times if it is not found or
        the module fails to describe a token: SoftHSM2 rewrites a token's file at every login
        (truncating it, then writing it), and a lookup reading it meanwhile, from another
        process, finds no such label or gets CKR_GENERAL_ERROR. Raises the last error."""
        with self._lock:
            library = self._library()
            for _ in range(TOKEN_LOOKUPS - 1):
                try:
                    return library.get_token(token_label=token_label)
                except (p11e.NoSuchToken, p11e.GeneralError):
                    time.sleep(TOKEN_LOOKUP_PAUSE_SECONDS)
            return library.get_token(token_label=token_label)

    def reload(self) -> None:
        with self._lock:
            self._epoch += 1
            if self._lib is None:
                return
            try:
                self._lib.reinitialize()
            except p11e.PKCS11Error:
                pkcs11.unload(self.module_path)
                self._lib = None

    def _library(self) -> Pkcs11Library:
        if self._lib is not None and self._pid != os.getpid():
            # A forked child inherits the parent's module state: it must initialise anew.
            self._pid = os.getpid()
            self.reload()
        if self._lib is None:
            if not os.path.exists(self.module_path):
                raise HsmLibraryNotFound(
                    f"PKCS#11 module not found at {self.module_path}: install it (Debian: "
                    "apt-get install softhsm2) or set hsm.module to your HSM's library"
                )
            try:
                self._lib = pkcs11.lib(self.module_path)
            except p11e.PKCS11Error as exc:
                code, name = ckr_of(exc)
                raise HsmLibraryNotFound(
                    f"cannot load the PKCS#11 module {self.module_path}: {exc}; check that it is "
                    "a PKCS#11 library for this architecture (and SOFTHSM2_CONF for SoftHSM)",
                    ckr=code,
                    ckr_name=name,
                ) from exc
        return self._lib

    def logged_in(self, session: pkcs11.Session) -> bool:
        with self._lock:
            if self._c_get_session_info is None:
                function = ctypes.CDLL(self.module_path).C_GetSessionInfo
                function.argtypes = (ctypes.c_ulong, ctypes.POINTER(_CkSessionInfo))
                function.restype = ctypes.c_ulong
                self._c_get_session_info = function
            info = _CkSessionInfo()
            handle = session.handle  # type: ignore[attr-defined]  # not in python-pkcs11's stubs
            if self._c_get_session_info(handle, ctypes.byref(info)) != CKR_OK:
                return False
            return info.state in (CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS)

    def _login(self, session: pkcs11.Session, pin: str, user_type: UserType) -> None:
        """C_Login through the module's own entry point.

        Login state is per application, not per session: a second session on a token is
        already logged in (CKR_USER_ALREADY_LOGGED_IN is success here), which python-pkcs11's
        `Token.open(user_pin=…)` reports as an error after leaking the session it opened.
        """
        if self._c_login is None:
            c_login = ctypes.CDLL(self.module_path).C_Login
            c_login.argtypes = (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong)
            c_login.restype = ctypes.c_ulong
            self._c_login = c_login
        encoded = pin.encode()
        handle = session.handle  # type: ignore[attr-defined]  # not in python-pkcs11's stubs
        rv = self._c_login(handle, int(user_type), encoded, len(encoded))
        if rv in (CKR_OK, CKR_USER_ALREADY_LOGGED_IN):
            return
        with contextlib.suppress(p11e.PKCS11Error):
            session.close()
        exc_class = EXCEPTION_FOR_CODE.get(rv)
        raise exc_class() if exc_class else p11e.PKCS11Error(f"Unmapped error code 0x{rv:08x}")
