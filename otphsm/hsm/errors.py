"""Typed HSM errors carrying the CKR code, and the one translation from python-pkcs11's.

Messages name the token, key labels and what to do; they never contain PINs or key material.
"""

from __future__ import annotations

import re

import pkcs11.exceptions as p11e

from otphsm.core.errors import ConfigurationError, DeviceRefused, DeviceUnavailable, OtpHsmError

# python-pkcs11 exception class -> (CKR code, CKR name). Codes from PKCS#11 v2.40 pkcs11t.h.
CKR_CODES: dict[type[p11e.PKCS11Error], tuple[int, str]] = {
    p11e.GeneralError: (0x05, "CKR_GENERAL_ERROR"),
    p11e.FunctionFailed: (0x06, "CKR_FUNCTION_FAILED"),
    p11e.ArgumentsBad: (0x07, "CKR_ARGUMENTS_BAD"),
    p11e.AttributeReadOnly: (0x10, "CKR_ATTRIBUTE_READ_ONLY"),
    p11e.AttributeSensitive: (0x11, "CKR_ATTRIBUTE_SENSITIVE"),
    p11e.AttributeTypeInvalid: (0x12, "CKR_ATTRIBUTE_TYPE_INVALID"),
    p11e.AttributeValueInvalid: (0x13, "CKR_ATTRIBUTE_VALUE_INVALID"),
    p11e.DataInvalid: (0x20, "CKR_DATA_INVALID"),
    p11e.DataLenRange: (0x21, "CKR_DATA_LEN_RANGE"),
    p11e.DeviceError: (0x30, "CKR_DEVICE_ERROR"),
    p11e.DeviceMemory: (0x31, "CKR_DEVICE_MEMORY"),
    p11e.DeviceRemoved: (0x32, "CKR_DEVICE_REMOVED"),
    p11e.FunctionCancelled: (0x50, "CKR_FUNCTION_CANCELED"),
    p11e.KeyHandleInvalid: (0x60, "CKR_KEY_HANDLE_INVALID"),
    p11e.KeySizeRange: (0x62, "CKR_KEY_SIZE_RANGE"),
    p11e.KeyTypeInconsistent: (0x63, "CKR_KEY_TYPE_INCONSISTENT"),
    p11e.KeyNotWrappable: (0x69, "CKR_KEY_NOT_WRAPPABLE"),
    p11e.KeyUnextractable: (0x6A, "CKR_KEY_UNEXTRACTABLE"),
    p11e.MechanismInvalid: (0x70, "CKR_MECHANISM_INVALID"),
    p11e.MechanismParamInvalid: (0x71, "CKR_MECHANISM_PARAM_INVALID"),
    p11e.ObjectHandleInvalid: (0x82, "CKR_OBJECT_HANDLE_INVALID"),
    p11e.OperationActive: (0x90, "CKR_OPERATION_ACTIVE"),
    p11e.OperationNotInitialized: (0x91, "CKR_OPERATION_NOT_INITIALIZED"),
    p11e.PinIncorrect: (0xA0, "CKR_PIN_INCORRECT"),
    p11e.PinInvalid: (0xA1, "CKR_PIN_INVALID"),
    p11e.PinLenRange: (0xA2, "CKR_PIN_LEN_RANGE"),
    p11e.PinExpired: (0xA3, "CKR_PIN_EXPIRED"),
    p11e.PinLocked: (0xA4, "CKR_PIN_LOCKED"),
    p11e.SessionClosed: (0xB0, "CKR_SESSION_CLOSED"),
    p11e.SessionCount: (0xB1, "CKR_SESSION_COUNT"),
    p11e.SessionHandleInvalid: (0xB3, "CKR_SESSION_HANDLE_INVALID"),
    p11e.SessionReadOnly: (0xB5, "CKR_SESSION_READ_ONLY"),
    p11e.SignatureInvalid: (0xC0, "CKR_SIGNATURE_INVALID"),
    p11e.SignatureLenRange: (0xC1, "CKR_SIGNATURE_LEN_RANGE"),
    p11e.TemplateIncomplete: (0xD0, "CKR_TEMPLATE_INCOMPLETE"),
    p11e.TemplateInconsistent: (0xD1, "CKR_TEMPLATE_INCONSISTENT"),
    p11e.TokenNotPresent: (0xE0, "CKR_TOKEN_NOT_PRESENT"),
    p11e.TokenNotRecognised: (0xE1, "CKR_TOKEN_NOT_RECOGNIZED"),
    p11e.TokenWriteProtected: (0xE2, "CKR_TOKEN_WRITE_PROTECTED"),
    p11e.UnwrappingKeyHandleInvalid: (0xF0, "CKR_UNWRAPPING_KEY_HANDLE_INVALID"),
    p11e.UserAlreadyLoggedIn: (0x100, "CKR_USER_ALREADY_LOGGED_IN"),
    p11e.UserNotLoggedIn: (0x101, "CKR_USER_NOT_LOGGED_IN"),
    p11e.UserPinNotInitialized: (0x102, "CKR_USER_PIN_NOT_INITIALIZED"),
    p11e.AnotherUserAlreadyLoggedIn: (0x104, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN"),
    p11e.WrappedKeyInvalid: (0x110, "CKR_WRAPPED_KEY_INVALID"),
    p11e.WrappedKeyLenRange: (0x112, "CKR_WRAPPED_KEY_LEN_RANGE"),
    p11e.WrappingKeyHandleInvalid: (0x113, "CKR_WRAPPING_KEY_HANDLE_INVALID"),
    p11e.RandomNoRNG: (0x121, "CKR_RANDOM_NO_RNG"),
}
EXCEPTION_FOR_CODE: dict[int, type[p11e.PKCS11Error]] = {
    code: cls for cls, (code, _) in CKR_CODES.items()
}

# The session or the login is gone: open a new session, log in again, retry.
SESSION_LOST = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.UserNotLoggedIn,
)
# The device or the token went away: reload the module's slot list first.
DEVICE_LOST = (
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.DeviceError,
    p11e.NoSuchToken,
)
RECOVERABLE = SESSION_LOST + DEVICE_LOST

_UNMAPPED = re.compile(r"0x([0-9a-fA-F]+)")


def ckr_of(exc: BaseException) -> tuple[int | None, str]:
    for cls in type(exc).__mro__:
        if cls in CKR_CODES:
            return CKR_CODES[cls]
    match = _UNMAPPED.search(str(exc)) if type(exc) is p11e.PKCS11Error else None
    if match:
        code = int(match.group(1), 16)
        return code, f"CKR_0x{code:X}"
    return None, type(exc).__name__


class HsmError(OtpHsmError):
    """An HSM failure. `ckr` is the PKCS#11 return code when the module gave one."""

    def __init__(self, message: str, *, ckr: int | None = None, ckr_name: str | None = None):
        self.ckr = ckr
        self.ckr_name = ckr_name
        suffix = f" [{ckr_name}]" if ckr_name else ""
        super().__init__(message + suffix)


class HsmLibraryNotFound(HsmError, ConfigurationError):
    pass


class HsmTokenNotFound(HsmError, ConfigurationError):
    pass


class HsmPinIncorrect(HsmError, ConfigurationError):
    pass


class HsmKeyMissing(HsmError, ConfigurationError):
    pass


class HsmKeyUnsafe(HsmError, ConfigurationError):
    """A provisioned key lacks a protection otphsm relies on."""


class HsmUnavailable(HsmError, DeviceUnavailable):
    """The session or device was lost and did not come back within the retry budget."""


class HsmCapacityExceeded(HsmError, DeviceUnavailable):
    pass


class HsmOperationRefused(HsmError, DeviceRefused):
    """The HSM refused the operation (e.g. wrapping a seed under a key that is not the KEK)."""


def translate(exc: p11e.PKCS11Error, action: str) -> HsmError:
    """Turn a python-pkcs11 exception raised while doing `action` into our typed error."""
    code, name = ckr_of(exc)
    if isinstance(exc, p11e.PinIncorrect | p11e.PinInvalid | p11e.PinLenRange):
        return HsmPinIncorrect(
            "the HSM refused the user PIN: check hsm.user_pin (or OTPHSM_HSM_PIN)",
            ckr=code,
            ckr_name=name,
        )
    if isinstance(exc, p11e.PinLocked):
        return HsmPinIncorrect(
            "the HSM user PIN is locked after too many wrong tries: the Security Officer must "
            "reset it",
            ckr=code,
            ckr_name=name,
        )
    if isinstance(exc, RECOVERABLE):
        return HsmUnavailable(f"the HSM session was lost while {action}", ckr=code, ckr_name=name)
    if isinstance(exc, p11e.DeviceMemory):
        return HsmCapacityExceeded(
            f"the HSM is out of object memory while {action}", ckr=code, ckr_name=name
        )
    return HsmOperationRefused(f"the HSM refused {action}", ckr=code, ckr_name=name)
