"""`otphsm serve` configuration: a TOML file, then environment overrides, validated.

Every key of a section may be overridden by `OTPHSM_<SECTION>_<KEY>` (e.g. `OTPHSM_HSM_USER_PIN`,
`OTPHSM_SERVER_PORT`; lists are comma-separated, booleans true/false). Unknown sections and
keys in the file are refused with the list of known ones. Relative paths are relative to the
file's directory. The HSM PIN is never part of any repr or message.

    [server]   address, port, tls_cert, tls_key, tls_client_ca, insecure, max_workers,
               grace_seconds, max_message_bytes, health_interval_seconds, log_level, log_format
    [hsm]      module, token_label, user_pin | user_pin_file, seed_storage, cache_size,
               wrap_mechanism, kek_label, pepper_label
    [store]    url, pool_size, timeout_seconds
    [card]     trusted_ca (list of PEM files), crls (list of PEM/DER files), readers
    [sms]      kind (outbox | http), outbox, url, timeout_seconds, retries,
               retry_backoff_seconds, bearer_token_file, push_outbox
    [policy]   every field of `otphsm.core.app.context.AppPolicy` (issuer, *_seconds, ...)
    [verification]  every field of `otphsm.core.verification.VerificationPolicy`
    [metrics]  enabled, address, port
    [ratelimit]  enabled, failures_per_second, burst (failed code checks per caller)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from otphsm.core.app.context import AppPolicy
from otphsm.core.errors import ConfigurationError
from otphsm.core.seeds import SeedStorage
from otphsm.core.verification import VerificationPolicy
from otphsm.hsm.config import DEFAULT_MODULE
from otphsm.hsm.mechanisms import WRAP_MECHANISMS
from otphsm.service.ratelimit import RateLimitSection

ENV_PREFIX = "OTPHSM_"
READER_KINDS = ("none", "pcsc")
SMS_KINDS = ("outbox", "http")
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV_ALIASES = {
    "OTPHSM_HSM_TOKEN": "OTPHSM_HSM_TOKEN_LABEL",
    "OTPHSM_HSM_PIN": "OTPHSM_HSM_USER_PIN",
}
"""The names `otphsm sim hsm init` prints, accepted too."""

S = TypeVar("S")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)


@dataclass(frozen=True)
class ServerSection:
    address: str = "127.0.0.1"
    port: int = 50051
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    insecure: bool = False
    """No TLS, roles from request metadata: local development only, logged loudly."""
    max_workers: int = 16
    grace_seconds: float = 10.0
    """On SIGTERM/SIGINT, in-flight calls get this long to finish."""
    max_message_bytes: int = 65536
    health_interval_seconds: float = 5.0
    log_level: str = "INFO"
    log_format: str = "json"

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "server.port must be 0..65535")
        _require(self.max_workers >= 1, "server.max_workers must be at least 1")
        _require(self.grace_seconds >= 0, "server.grace_seconds must be >= 0")
        _require(self.max_message_bytes >= 1024, "server.max_message_bytes must be >= 1024")
        _require(self.health_interval_seconds > 0, "server.health_interval_seconds must be > 0")
        _require(self.log_level.upper() in LOG_LEVELS, f"server.log_level: one of {LOG_LEVELS}")
        _require(self.log_format in LOG_FORMATS, f"server.log_format: one of {LOG_FORMATS}")
        if not self.insecure:
            missing = [k for k in ("tls_cert", "tls_key", "tls_client_ca") if not getattr(self, k)]
            _require(
                not missing,
                f"server.{', server.'.join(missing)} must be set (or server.insecure = true "
                "for local development)",
            )


@dataclass(frozen=True)
class HsmSection:
    token_label: str = ""
    user_pin: str = field(default="", repr=False)
    user_pin_file: str = ""
    module: str = DEFAULT_MODULE
    seed_storage: str = SeedStorage.WRAPPED.value
    cache_size: int = 4096
    wrap_mechanism: str = "AES_KEY_WRAP_PAD"
    kek_label: str = "otphsm-kek"
    pepper_label: str = "otphsm-pepper"

    def __post_init__(self) -> None:
        _require(bool(self.token_label), "hsm.token_label must be set")
        _require(
            bool(self.user_pin) != bool(self.user_pin_file),
            "set exactly one of hsm.user_pin and hsm.user_pin_file",
        )
        storages = tuple(s.value for s in SeedStorage)
        _require(self.seed_storage in storages, f"hsm.seed_storage must be one of {storages}")
        _require(self.cache_size >= 0, "hsm.cache_size must be >= 0")
        known = sorted(WRAP_MECHANISMS)
        _require(self.wrap_mechanism in known, f"hsm.wrap_mechanism must be one of {known}")

    def pin(self) -> str:
        if self.user_pin:
            return self.user_pin
        try:
            return Path(self.user_pin_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read hsm.user_pin_file: {exc.strerror}") from None


@dataclass(frozen=True)
class StoreSection:
    url: str = ""
    pool_size: int = 4
    timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        _require(bool(self.url), "store.url must be set (sqlite:///path.db or postgresql://…)")
        _require(self.pool_size >= 1, "store.pool_size must be at least 1")
        _require(self.timeout_seconds > 0, "store.timeout_seconds must be > 0")


@dataclass(frozen=True)
class CardSection:
    trusted_ca: tuple[str, ...] = ()
    crls: tuple[str, ...] = ()
    readers: str = "none"
    """"pcsc": the server's own readers serve AuthoriseWithLocalCard and WatchCards."""

    def __post_init__(self) -> None:
        _require(bool(self.trusted_ca), "card.trusted_ca must name at least one CA PEM file")
        _require(self.readers in READER_KINDS, f"card.readers must be one of {READER_KINDS}")


@dataclass(frozen=True)
class SmsSection:
    kind: str = "outbox"
    """"outbox": the simulator (a JSON-lines file); "http": `otphsm.sms_http` to `url`."""
    outbox: str = "sms-outbox.jsonl"
    url: str = ""
    timeout_seconds: float = 5.0
    """http: per attempt."""
    retries: int = 2
    """http: attempts after the first, on 5xx, 429, timeouts and connection failures."""
    retry_backoff_seconds: float = 0.5
    """http: the wait before the first retry, doubling before each further one."""
    bearer_token_file: str = ""
    """http: a file holding the gateway's API token (sent as Authorization: Bearer)."""
    push_outbox: str = "push-outbox"
    """Directory of per-device push outboxes (the simulated push service)."""

    def __post_init__(self) -> None:
        _require(self.kind in SMS_KINDS, f"sms.kind must be one of {SMS_KINDS}")
        if self.kind == "http":
            _require(
                self.url.startswith(("http://", "https://")),
                "sms.url must be an http:// or https:// URL when sms.kind = http",
            )
        _require(self.timeout_seconds > 0, "sms.timeout_seconds must be > 0")
        _require(0 <= self.retries <= 10, "sms.retries must be 0..10")
        _require(self.retry_backoff_seconds >= 0, "sms.retry_backoff_seconds must be >= 0")


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9464

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "metrics.port must be 0..65535")


@dataclass(frozen=True)
class ServiceConfig:
    server: ServerSection
    hsm: HsmSection
    store: StoreSection
    card: CardSection
    sms: SmsSection = field(default_factory=SmsSection)
    policy: AppPolicy = field(default_factory=AppPolicy)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    ratelimit: RateLimitSection = field(default_factory=RateLimitSection)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSection,
    "hsm": HsmSection,
    "store": StoreSection,
    "card": CardSection,
    "sms": SmsSection,
    "policy": AppPolicy,
    "verification": VerificationPolicy,
    "metrics": MetricsSection,
    "ratelimit": RateLimitSection,
}
_PATH_KEYS = {
    "server": ("tls_cert", "tls_key", "tls_client_ca"),
    "hsm": ("user_pin_file",),
    "card": ("trusted_ca", "crls"),
    "sms": ("outbox", "bearer_token_file", "push_outbox"),
}


def load_config(path: Path, env: Mapping[str, str] | None = None) -> ServiceConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    return config_from_mapping(raw, base=path.parent, env=os.environ if env is None else env)


def config_from_mapping(
    raw: Mapping[str, Any], *, base: Path, env: Mapping[str, str]
) -> ServiceConfig:
    unknown = sorted(set(raw) - set(_SECTIONS))
    _require(not unknown, f"unknown section(s) {unknown}; known: {sorted(_SECTIONS)}")
    env = {ENV_ALIASES.get(key, key): value for key, value in env.items()}
    parsed: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        section = raw.get(name, {})
        _require(isinstance(section, dict), f"[{name}] must be a table")
        values = _section_values(name, cls, section, env)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key in _PATH_KEYS.get(name, ()):  # defaults too: never relative to the cwd
            values[key] = _resolve(values.get(key, defaults[key]), base)
        parsed[name] = _build(name, cls, values)
    verification = parsed.pop("verification")
    parsed["policy"] = dataclasses.replace(parsed["policy"], verification=verification)
    return ServiceConfig(**parsed)


def _section_values(
    name: str, cls: type[Any], section: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    hints = get_type_hints(cls)
    keys = [f.name for f in dataclasses.fields(cls) if f.init and f.name in hints]
    keys = [k for k in keys if hints[k] in (str, int, float, bool, tuple[str, ...])]
    unknown = sorted(set(section) - set(keys))
    _require(not unknown, f"unknown key(s) {unknown} in [{name}]; known: {sorted(keys)}")
    values: dict[str, Any] = {}
    for key in keys:
        where = f"{name}.{key}"
        if key in section:
            values[key] = _typed(section[key], hints[key], where)
        env_key = f"{ENV_PREFIX}{name}_{key}".upper()
        if env_key in env:
            values[key] = _from_env(env[env_key], hints[key], env_key)
    return values


def _build(name: str, cls: type[S], values: dict[str, Any]) -> S:
    if name in ("policy", "verification"):
        for key, value in values.items():
            if isinstance(value, int):
                positive = key.endswith(("_seconds", "_digits", "_attempts")) or "failures" in key
                least = 1 if positive else 0
                _require(value >= least, f"{name}.{key} must be >= {least}")
    try:
        return cls(**values)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"[{name}]: {exc}") from None


def _typed(value: Any, kind: Any, where: str) -> Any:
    if kind is bool:
        _require(isinstance(value, bool), f"{where} must be true or false")
        return value
    if kind is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer"
        )
        return value
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        _require(ok, f"{where} must be a number")
        return float(value)
    if kind is str:
        _require(isinstance(value, str), f"{where} must be a string")
        return value
    ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    _require(ok, f"{where} must be a list of strings")
    return tuple(value)


def _from_env(text: str, kind: Any, where: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        _require(lowered in ("true", "false", "1", "0"), f"{where} must be true or false")
        return lowered in ("true", "1")
    if kind is int or kind is float:
        try:
            return kind(text)
        except ValueError:
            raise ConfigurationError(f"{where} must be a number") from None
    if kind is str:
        return text
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _resolve(value: str | tuple[str, ...], base: Path) -> str | tuple[str, ...]:
    if isinstance(value, tuple):
        return tuple(str(base / item) if item else item for item in value)
    return str(base / value) if value else value
