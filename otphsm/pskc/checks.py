"""The shape a vendor's PSKC file must have before python-pskc reads it, and the typed refusal
every PSKC check raises. Parsed with defusedxml whatever parser python-pskc would pick."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XmlParseError

import defusedxml.ElementTree as defused
from defusedxml import DefusedXmlException
from pskc.algorithms import normalise_algorithm

from otphsm.core.app.fobs import MAX_BATCH
from otphsm.core.errors import InvalidInput

PSKC_NS = "urn:ietf:params:xml:ns:keyprov:pskc"
_XMLENC = "http://www.w3.org/2001/04/xmlenc#"
CBC_ALGORITHMS = frozenset(f"{_XMLENC}aes{bits}-cbc" for bits in (128, 192, 256))
KEY_WRAP_ALGORITHMS = frozenset(f"{_XMLENC}kw-aes{bits}" for bits in (128, 192, 256))
_LEGACY = frozenset({"SecretContainer", "Device", "DeviceId", "Value", "ValueDigest", "Usage"})


class PskcProblem(enum.StrEnum):
    MALFORMED = "malformed"
    """Not XML, not a PSKC 1.0 KeyContainer, a DTD or entity, an element out of place."""
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    PROTECTION = "protection"
    """Secrets in clear, no MAC, or the wrong kind of key given (a PSK for a password file)."""
    UNSUPPORTED = "unsupported"
    """An algorithm, policy or parameter this service does not implement."""
    WRONG_KEY = "wrong_key"
    """The pre-shared key or password does not open the file."""
    BAD_MAC = "bad_mac"
    """A value's MAC does not match: the file was altered or damaged."""
    MISSING_SERIAL = "missing_serial"
    BAD_SERIAL = "bad_serial"
    DUPLICATE_SERIAL = "duplicate_serial"
    BAD_SECRET = "bad_secret"  # noqa: S105 (a reason, not a secret)
    BAD_PARAMETERS = "bad_parameters"


class PskcRefused(InvalidInput):
    """The whole PSKC file is refused; nothing was imported. Names no secret."""

    def __init__(
        self, problem: PskcProblem, message: str, *, package: int = 0, serial: str = ""
    ) -> None:
        where = f"key package #{package}" if package else ""
        if serial:
            where = f"{where} ({serial})" if where else serial
        prefix = f"{where}: " if where else ""
        super().__init__(f"PSKC file refused ({problem.value}): {prefix}{message}")
        self.problem = problem
        self.package = package
        self.serial = serial


@dataclass(frozen=True, slots=True)
class Shape:
    packages: int
    has_mac_key: bool
    """The file carries its own MAC key (encrypted under the file key): a wrong key shows as
    that key failing to decrypt. Without one, python-pskc MACs with the file key itself."""


def check_structure(data: bytes) -> Shape:
    """Refuse what python-pskc would read leniently: DTDs and entities, pre-RFC drafts, secrets
    in clear (a PlainValue beside an EncryptedValue wins there), CBC values without a MAC,
    encryption other than AES."""
    try:
        root = defused.fromstring(data, forbid_dtd=True)
    except (XmlParseError, DefusedXmlException, ValueError) as exc:
        raise PskcRefused(PskcProblem.MALFORMED, "not well-formed XML") from exc
    if root.tag != f"{{{PSKC_NS}}}KeyContainer":
        raise PskcRefused(PskcProblem.MALFORMED, "the root is not a PSKC KeyContainer")
    if root.get("Version") not in ("1.0", "1"):
        raise PskcRefused(PskcProblem.UNSUPPORTED, "only PSKC version 1.0 is supported")
    packages = [child for child in root if _local(child) == "KeyPackage"]
    if not packages:
        raise PskcRefused(PskcProblem.EMPTY, "the file holds no key package")
    if len(packages) > MAX_BATCH:
        raise PskcRefused(PskcProblem.TOO_LARGE, f"at most {MAX_BATCH} key packages per file")
    has_mac_key = False
    for element in root.iter():
        name = _local(element)
        has_mac_key = has_mac_key or name == "MACKey"
        if name in _LEGACY or (name == "Data" and element.get("Name")):
            raise PskcRefused(
                PskcProblem.UNSUPPORTED, f"<{name}> is from a pre-RFC 6030 draft of PSKC"
            )
        if name in ("EncryptedValue", "MACKey"):
            _check_encryption_method(element)
        if name == "Secret":
            _check_secret_element(element)
        _check_value_mac(element)
    for index, package in enumerate(packages, 1):
        keys = [child for child in package if _local(child) == "Key"]
        if len(keys) != 1:
            raise PskcRefused(
                PskcProblem.UNSUPPORTED, "a key package must hold exactly one key", package=index
            )
    return Shape(len(packages), has_mac_key)


def _check_secret_element(secret: Element) -> None:
    names = [_local(child) for child in secret]
    if "PlainValue" in names or names.count("EncryptedValue") != 1:
        raise PskcRefused(PskcProblem.PROTECTION, "every secret must be encrypted, once")


def _check_value_mac(carrier: Element) -> None:
    """AES-CBC gives no integrity: a CBC-encrypted value must carry its MAC."""
    has_mac = any(_local(child) == "ValueMAC" for child in carrier)
    for child in carrier:
        if _local(child) == "EncryptedValue" and _method(child) in CBC_ALGORITHMS and not has_mac:
            raise PskcRefused(PskcProblem.PROTECTION, "an encrypted value has no MAC")


def _check_encryption_method(encrypted: Element) -> None:
    method = _method(encrypted)
    if method is None:
        raise PskcRefused(PskcProblem.MALFORMED, f"<{_local(encrypted)}> names no algorithm")
    if method not in CBC_ALGORITHMS | KEY_WRAP_ALGORITHMS:
        raise PskcRefused(
            PskcProblem.UNSUPPORTED,
            f"encryption {method.rsplit('#', 1)[-1]} is not accepted (AES-CBC or AES key wrap)",
        )


def _method(encrypted: Element) -> str | None:
    for child in encrypted:
        if _local(child) == "EncryptionMethod":
            return normalise_algorithm(child.get("Algorithm"))
    return None


def _local(element: Element) -> str:
    return element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
