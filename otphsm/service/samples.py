"""The sample configuration files: every key the loader knows, each with a one-line note and
its default, the keys a development setup needs set, the others commented out.

`otphsm admin init-config DIR` writes them and `examples/` holds the same text (a test checks
both, and that every key of every section has its note here). The development layout they
name, relative to the files (the README's "By hand" makes it):

    hsm/        otphsm sim hsm init hsm       (softhsm2.conf, user-pin)
    pki/        otphsm admin dev-pki pki      (ca.pem, server.pem, <role>.pem)
    card-ca/    otphsm sim ca card-ca         (cns-ca.pem, cns-ca.crl.pem)
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otphsm.config.client import ClientSection
from otphsm.config.loader import section_keys
from otphsm.service.config import SECTIONS

DEV_SERVER = "localhost:50051"
"""Where the clients reach the development server (its certificate names localhost)."""

NOTES: dict[str, str] = {
    "server.address": "address to listen on (0.0.0.0: every interface)",
    "server.port": "gRPC port (0: any free port, logged at start)",
    "server.tls_cert": "the server's certificate (PEM)",
    "server.tls_key": "its private key (PEM)",
    "server.tls_client_ca": "the CA of the client certificates; roles are their URI SANs",
    "server.insecure": "no TLS, roles from request metadata: local development only",
    "server.max_workers": "threads serving calls",
    "server.grace_seconds": "on SIGTERM/SIGINT, calls in flight get this long to finish",
    "server.max_message_bytes": "largest request (raise it for big PSKC files)",
    "server.health_interval_seconds": "how often the HSM and the database are probed",
    "server.processes": "server processes sharing the ports (0: one per usable CPU; 1: no parent)",
    "server.model": "auto (event-loop on SQLite, else threads), threads or event-loop",
    "server.log_level": "DEBUG, INFO, WARNING or ERROR",
    "server.log_format": "json (one record a line) or text",
    "hsm.token_label": "the PKCS#11 token's label (required)",
    "hsm.user_pin": "the user PIN (set exactly one of user_pin and user_pin_file)",
    "hsm.user_pin_file": "a file holding the user PIN (mode 0600)",
    "hsm.module": "the PKCS#11 module of the HSM",
    "hsm.softhsm_conf": "SoftHSM2 only: its config file, exported as SOFTHSM2_CONF",
    "hsm.seed_storage": "wrapped (seeds in the database, wrapped) or resident (on the token)",
    "hsm.cache_size": "unwrapped seeds kept in the HSM (about 11 KB each in SoftHSM)",
    "hsm.wrap_mechanism": "AES_KEY_WRAP_PAD (SoftHSM) or AES_CBC_PAD",
    "hsm.kek_label": "the key-encryption key's label (made by `otphsm admin hsm-init`)",
    "hsm.pepper_label": "the MAC key's label (activation codes, audit chain)",
    "store.url": "sqlite:///relative.db (beside this file), sqlite:////abs.db, postgresql://…",
    "store.pool_size": "PostgreSQL connections",
    "store.timeout_seconds": "wait for a connection or a lock",
    "card.trusted_ca": "the CNS CA certificates (PEM) cards must chain to",
    "card.crls": "their CRLs (PEM or DER): enrolment is refused without a current one",
    "card.readers": "none, or pcsc: the server's own readers serve the kiosk RPCs",
    "card.crl_check_seconds": "how often trusted_ca and crls are looked at and read again "
    "when changed (SIGHUP: at once)",
    "card.crl_fetch": "fetch CRLs over HTTP (crl_urls and the CAs' and cards' distribution points)",
    "card.crl_urls": "http:// URLs of CRLs to fetch (with crl_fetch)",
    "card.crl_fetch_seconds": "how often fetched CRLs are fetched again",
    "card.crl_fetch_timeout_seconds": "the timeout of one CRL fetch",
    "sms.kind": "outbox (a JSON-lines spool file) or http",
    "sms.outbox": "the spool file (kind = outbox)",
    "sms.url": "the SMS gateway (kind = http): POST {to, text} as JSON",
    "sms.timeout_seconds": "http: per attempt",
    "sms.retries": "http: attempts after the first, on 5xx, 429, timeouts",
    "sms.retry_backoff_seconds": "http: the first wait, doubling",
    "sms.bearer_token_file": "http: a file holding the gateway's API token",
    "sms.push_outbox": "the push spool directory (one file per token serial)",
    "policy.issuer": "the issuer shown in authenticator apps",
    "policy.challenge_seconds": "a card challenge's lifetime",
    "policy.authorisation_seconds": "a card or SMS authorisation's lifetime",
    "policy.activation_code_seconds": "an activation code's lifetime",
    "policy.temporary_secret_seconds": "a temporary secret's lifetime",
    "policy.secret_failures_before_wait": "wrong secrets before a wait",
    "policy.secret_wait_seconds": "that wait",
    "policy.sms_code_seconds": "an SMS code's lifetime (replacement and login codes)",
    "policy.sms_code_digits": "its digits",
    "policy.write_attempts": "retries of a write that lost a race",
    "policy.login_codes_per_citizen": "login codes sent per citizen per window (0: no limit)",
    "policy.login_code_citizen_window_seconds": "that window",
    "policy.login_codes_per_caller": "login codes per relying party per window (0: no limit)",
    "policy.login_code_caller_window_seconds": "that window",
    "policy.grid_cells": "Security Card cells (10-100)",
    "policy.grid_cell_digits": "digits per cell (2-6)",
    "policy.grid_challenge_seconds": "a grid challenge's lifetime",
    "verification.totp_window_steps": "TOTP steps accepted either side of now",
    "verification.first_use_window_steps": "the same for a token's first code",
    "verification.hotp_look_ahead": "HOTP counters looked ahead",
    "verification.max_drift_steps": "clock drift learned, in steps",
    "verification.expired_look_back_steps": "steps looked back to answer EXPIRED",
    "verification.lock_after_failures": "failures before a lock",
    "verification.lock_seconds": "the first lock, doubling",
    "verification.lock_max_seconds": "the longest lock",
    "verification.resync_hotp_range": "HOTP counters searched by Resync",
    "verification.resync_totp_seconds": "TOTP time searched by Resync",
    "verification.known_origin_days": "how long an origin that logged in stays known",
    "verification.unknown_origin_failures": "failures unknown origins share per subject",
    "verification.unknown_origin_window_seconds": "per this rolling window",
    "metrics.enabled": "serve Prometheus metrics",
    "metrics.address": "their address",
    "metrics.port": "their port (one per server on a host)",
    "http.enabled": "serve the HTTP/JSON API too (mTLS with [server]'s TLS files, same roles)",
    "http.address": "its address",
    "http.port": "its port",
    "http.max_connections": "connections served at once (a thread each)",
    "radius.enabled": "answer RADIUS Access-Requests (VPNs, firewalls, Wi-Fi, pam_radius)",
    "radius.address": "its address",
    "radius.port": "its UDP port",
    "radius.workers": "requests handled at once",
    "radius.answer_cache_seconds": "how long an answer is kept for a NAS's retransmission",
    "radius.clients": "one [[radius.clients]] table per NAS: name, addresses, secret_file, "
    "failures_per_second, burst, require_prefix, oob_challenge (see README, RADIUS)",
    "ratelimit.enabled": "limit failed code checks per caller",
    "ratelimit.failures_per_second": "sustained",
    "ratelimit.burst": "at once after a quiet spell",
    "client.server": "host:port of the service",
    "client.ca": "the CA that signed the server's certificate",
    "client.cert": "this client's certificate: its role is in it",
    "client.key": "its private key",
    "client.timeout_seconds": "per call",
}

DEV_SERVER_VALUES: dict[str, dict[str, Any]] = {
    "server": {
        "address": "127.0.0.1",
        "port": 50051,
        "tls_cert": "pki/server.pem",
        "tls_key": "pki/server-key.pem",
        "tls_client_ca": "pki/ca.pem",
        "grace_seconds": 10.0,
    },
    "hsm": {
        "token_label": "otphsm",
        "user_pin_file": "hsm/user-pin",
        "softhsm_conf": "hsm/softhsm2.conf",
    },
    "store": {"url": "sqlite:///otphsm.db"},
    "card": {"trusted_ca": ["card-ca/cns-ca.pem"], "crls": ["card-ca/cns-ca.crl.pem"]},
}


@dataclass(frozen=True)
class Sample:
    name: str
    """The file's name."""
    text: str


def client_values(role: str) -> dict[str, dict[str, Any]]:
    return {
        "client": {
            "server": DEV_SERVER,
            "ca": "pki/ca.pem",
            "cert": f"pki/{role}.pem",
            "key": f"pki/{role}-key.pem",
        }
    }


CLIENTS = {
    "station.toml": ("enroller", "a technician's station (otphsm enrol, otphsm card)"),
    "phone.toml": ("device", "the emulated phone's gateway (otphsm token)"),
    "verifier.toml": ("verifier", "a relying party checking logins (ValidationService)"),
}


def samples() -> list[Sample]:
    """server.toml and one client file per role the README's path uses."""
    header = (
        "# otphsm serve --config server.toml, as `otphsm admin init-config` writes it: every\n"
        "# key with its default; the development setup's keys are set (paths relative to this\n"
        "# file), the others commented out. Any key may be overridden by\n"
        "# OTPHSM_<SECTION>_<KEY> in the environment.\n"
    )
    found = [Sample("server.toml", header + render(SECTIONS, DEV_SERVER_VALUES))]
    for name, (role, what) in CLIENTS.items():
        head = (
            f"# {name}: {what}, with --config {name}.\n"
            f"# Its certificate carries the role {role}; paths are relative to this file.\n"
        )
        text = head + render({"client": ClientSection}, client_values(role))
        found.append(Sample(name, text))
    return found


def render(sections: Mapping[str, type[Any]], values: Mapping[str, Mapping[str, Any]]) -> str:
    """Each section's keys: `# note`, then `key = value` when given, else `# key = default`."""
    blocks: list[str] = []
    for section, cls in sections.items():
        lines = [f"[{section}]"]
        given = values.get(section, {})
        for key, default in section_keys(cls).items():
            lines.append(f"# {NOTES[f'{section}.{key}']}")
            if key in given:
                lines.append(f"{key} = {toml_value(given[key])}")
            else:
                lines.append(f"# {key} = {toml_value(default)}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def toml_value(value: Any) -> str:
    """A string, number, boolean, choice or list of strings as TOML (JSON's form is TOML's)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False)
