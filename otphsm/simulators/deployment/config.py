"""The configuration of the development deployment: one function knows its shape (the config
mapping of one `otphsm serve`: loopback, port 0, mTLS from the dev PKI, the SoftHSM2 token,
the test card CA and its CRL, the SMS outbox), and one writes a mapping as a TOML file.

The in-process test server and every `otphsm serve` child take their mapping from here;
`otphsm.service.config` validates it like any operator's file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from otphsm.service.devpki import DevPki
from otphsm.service.samples import toml_value
from otphsm.simulators.hsm.softhsm import SoftHsm

LOOPBACK = "127.0.0.1"
GRACE_SECONDS = 2.0

ConfigMapping = dict[str, dict[str, Any]]
"""Section name → key → value: what a TOML config file holds."""


class CardTrust(NamedTuple):
    """The card authority the service trusts: the test CA's certificate and its CRL (PEM)."""

    ca: Path
    crl: Path


def serve_config(
    softhsm: SoftHsm,
    pki: DevPki,
    card_trust: CardTrust,
    store_url: str,
    sms_outbox: Path,
    **sections: Mapping[str, Any],
) -> ConfigMapping:
    """The config mapping of one `otphsm serve` of the dev deployment; `sections` add to or
    replace keys section by section (`server={"max_workers": 8}` keeps the other keys)."""
    base: ConfigMapping = {
        "server": {
            "address": LOOPBACK,
            "port": 0,
            "tls_cert": str(pki.server_cert),
            "tls_key": str(pki.server_key),
            "tls_client_ca": str(pki.ca),
            "grace_seconds": GRACE_SECONDS,
            "processes": 1,  # one process, no supervising parent, unless a test asks
            "log_format": "json",  # the bound port is read back from the "serving" record
        },
        "hsm": {
            "module": softhsm.module,
            "token_label": softhsm.token_label,
            "user_pin": softhsm.user_pin,
        },
        "store": {"url": store_url},
        "card": {"trusted_ca": [str(card_trust.ca)], "crls": [str(card_trust.crl)]},
        "sms": {"outbox": str(sms_outbox)},
        "metrics": {"enabled": False},
    }
    return with_sections(base, sections)


def radius_section(secret_file: Path, **client: Any) -> dict[str, Any]:
    """A [radius] section on loopback, port 0, with one NAS "nas" sending from 127.0.0.1;
    `client` adds to or replaces the NAS's keys (`require_prefix=True`, ...)."""
    nas = {"name": "nas", "addresses": [LOOPBACK], "secret_file": str(secret_file), **client}
    return {"enabled": True, "address": LOOPBACK, "port": 0, "clients": [nas]}


def with_sections(
    raw: Mapping[str, Mapping[str, Any]], sections: Mapping[str, Any]
) -> ConfigMapping:
    """A copy of `raw` with each of `sections`' keys set in its section."""
    merged = {name: dict(values) for name, values in raw.items()}
    for name, values in sections.items():
        merged[name] = {**merged.get(name, {}), **values}
    return merged


def write_config(path: Path, raw: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a config mapping as TOML (sections of strings, numbers, booleans and lists of
    them, and lists of such tables: `[[section.key]]`); mode 0600 from the start when it holds
    a PIN."""
    lines: list[str] = []
    for section, values in raw.items():
        tables = {key: value for key, value in values.items() if _is_tables(value)}
        lines.append(f"[{section}]")
        lines.extend(
            f"{key} = {_toml_value(section, key, value)}"
            for key, value in values.items()
            if key not in tables
        )
        for key, items in tables.items():  # after the section's own keys, as TOML needs
            for item in items:
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{k} = {_toml_value(section, key, v)}" for k, v in item.items())
    secret = any(_is_pin(key) and value for values in raw.values() for key, value in values.items())
    path.unlink(missing_ok=True)  # a new file gets the mode below; an old one would keep its own
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return path


def _is_tables(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(item, Mapping) for item in value)
    )


def _is_pin(key: str) -> bool:
    return key == "pin" or key.endswith("_pin")


def _toml_value(section: str, key: str, value: Any) -> str:
    """A JSON scalar or array of scalars is also TOML (null and tables are not)."""
    items = value if isinstance(value, list | tuple) else [value]
    if not all(isinstance(item, str | int | float | bool) for item in items):
        raise TypeError(f"{section}.{key}: only strings, numbers, booleans and lists of them")
    return toml_value(value)
