"""`otphsm serve` configuration: the sections of its TOML file, read by `otphsm.config.loader`.

Every key of a section may be overridden by `OTPHSM_<SECTION>_<KEY>` (e.g. `OTPHSM_HSM_USER_PIN`,
`OTPHSM_SERVER_PORT`; lists are comma-separated, booleans true/false). Unknown sections and
keys in the file are refused with the list of known ones. Relative paths are relative to the
file's directory. Choices are enums and bounds are declared beside each field; rules across
fields are each section's `__post_init__`. The HSM PIN is never part of any repr or message.

    [server]   address, port, tls_cert, tls_key, tls_client_ca, insecure, max_workers,
               grace_seconds, max_message_bytes, health_interval_seconds, processes,
               log_level (DEBUG | INFO | WARNING | ERROR), log_format (json | text)
    [hsm]      module, softhsm_conf, token_label, user_pin | user_pin_file,
               seed_storage (wrapped | resident),
               cache_size, wrap_mechanism (AES_KEY_WRAP_PAD | AES_CBC_PAD), kek_label,
               pepper_label
    [store]    url, pool_size, timeout_seconds
    [card]     trusted_ca (list of PEM files), crls (list of PEM/DER files), readers (none | pcsc),
               crl_check_seconds, crl_fetch, crl_urls, crl_fetch_seconds,
               crl_fetch_timeout_seconds (see `otphsm.service.crls`)
    [sms]      kind (outbox | http), outbox, url, timeout_seconds, retries,
               retry_backoff_seconds, bearer_token_file, push_outbox
    [policy]   every field of `otphsm.core.app.context.AppPolicy` (issuer, *_seconds, ...)
    [verification]  every field of `otphsm.core.verification.VerificationPolicy`
    [metrics]  enabled, address, port
    [ratelimit]  enabled, failures_per_second, burst (failed code checks per caller)
    [http]     enabled (false), address, port, max_connections: the HTTP/JSON API beside
               gRPC, with the [server] TLS files
    [radius]   enabled (false), address, port, workers, answer_cache_seconds, and one
               [[radius.clients]] table per NAS: name, addresses, secret_file,
               failures_per_second, burst, require_prefix, oob_challenge (off | sms | push)
               (see `otphsm.service.radius`; a NAS's keys have no environment overrides)
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from otphsm.config.loader import FilePath, FilePaths, read_toml, sections_from_mapping
from otphsm.core.app.context import AppPolicy
from otphsm.core.bounds import above, at_least, between
from otphsm.core.errors import ConfigurationError
from otphsm.core.seeds import SeedStorage
from otphsm.core.verification import VerificationPolicy
from otphsm.hsm.config import DEFAULT_MODULE
from otphsm.hsm.mechanisms import WrapMechanism
from otphsm.service.logs import LogFormat, LogLevel
from otphsm.store.urls import resolve_store_url

ENV_ALIASES = {
    "OTPHSM_HSM_TOKEN": "OTPHSM_HSM_TOKEN_LABEL",
    "OTPHSM_HSM_PIN": "OTPHSM_HSM_USER_PIN",
}
"""The names `otphsm sim hsm init` prints, accepted too."""

Port = Annotated[int, between(0, 65535)]


class ReaderKind(enum.StrEnum):
    NONE = "none"
    PCSC = "pcsc"
    """The server's own readers serve AuthoriseWithLocalCard and WatchCards."""


class ServerModel(enum.StrEnum):
    AUTO = "auto"
    """"event-loop" with a SQLite store, "threads" with PostgreSQL: what served each faster."""
    THREADS = "threads"
    """gRPC's threaded server: each call handed to a pool of `max_workers` threads."""
    EVENT_LOOP = "event-loop"
    """grpc.aio: code checks run on the event loop's thread, one at a time; other calls in the
    pool (`otphsm.service.event_loop`)."""


class SmsKind(enum.StrEnum):
    OUTBOX = "outbox"
    """The simulator: a JSON-lines file."""
    HTTP = "http"
    """The HTTP gateway (`HttpSmsGateway`) to `sms.url`."""


def read_file(path: str, key: str) -> bytes:
    """A file a key names (a CA, a CRL, a token): its failure names the key and the path."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {key} file {path}: {exc.strerror}") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)


@dataclass(frozen=True)
class ServerSection:
    address: str = "127.0.0.1"
    port: Port = 50051
    tls_cert: FilePath = ""
    tls_key: FilePath = ""
    tls_client_ca: FilePath = ""
    insecure: bool = False
    """No TLS, roles from request metadata: local development only, logged loudly."""
    max_workers: Annotated[int, at_least(1)] = 16
    grace_seconds: Annotated[float, at_least(0)] = 10.0
    """On SIGTERM/SIGINT, in-flight calls get this long to finish."""
    max_message_bytes: Annotated[int, at_least(1024)] = 65536
    health_interval_seconds: Annotated[float, above(0)] = 5.0
    processes: Annotated[int, at_least(0)] = 1
    """Server processes sharing the ports (SO_REUSEPORT), each with its own HSM session and
    database connections, under one supervising parent (restarts, signals, one /metrics);
    0: one per CPU this process may use (affinity and cgroup quota). 1 (the default): one
    process, no parent; 2 showed no consistent gain on a 2-core machine shared with the load
    generator, and a worse p99 on SQLite (README, Benchmarks). Not with `card.readers = pcsc`.
    See `otphsm.service.supervisor`."""
    model: ServerModel = ServerModel.AUTO
    """How calls are served (`ServiceConfig.server_model`). On SQLite, "event-loop" served
    verifies for 13 to 23% less CPU each at 10³ tokens and up to a sixth more of them a second, on
    the two machines measured (at 10⁶, about as many as threads); on PostgreSQL, fewer a second
    (each verify's round trips block the loop): README, Benchmarks. The RADIUS front end's
    code checks follow it."""
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.JSON

    def __post_init__(self) -> None:
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
    user_pin_file: FilePath = ""
    module: str = DEFAULT_MODULE
    softhsm_conf: FilePath = ""
    """SoftHSM2 only: its configuration file, exported as SOFTHSM2_CONF before the module
    loads (empty: the environment's SOFTHSM2_CONF, else SoftHSM's default)."""
    seed_storage: SeedStorage = SeedStorage.WRAPPED
    cache_size: Annotated[int, at_least(0)] = 4096
    wrap_mechanism: WrapMechanism = WrapMechanism.AES_KEY_WRAP_PAD
    kek_label: str = "otphsm-kek"
    pepper_label: str = "otphsm-pepper"

    def __post_init__(self) -> None:
        _require(bool(self.token_label), "hsm.token_label must be set")
        _require(
            bool(self.user_pin) != bool(self.user_pin_file),
            "set exactly one of hsm.user_pin and hsm.user_pin_file",
        )

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
    pool_size: Annotated[int, at_least(1)] = 4
    timeout_seconds: Annotated[float, above(0)] = 5.0

    def __post_init__(self) -> None:
        _require(
            bool(self.url),
            "store.url must be set (sqlite:///relative.db, sqlite:////absolute.db or "
            "postgresql://…)",
        )


@dataclass(frozen=True)
class CardSection:
    trusted_ca: FilePaths = ()
    crls: FilePaths = ()
    readers: ReaderKind = ReaderKind.NONE
    crl_check_seconds: Annotated[float, above(0)] = 10.0
    """How often the trusted_ca and crls files are looked at (size, mtime, inode) and read
    again when one changed; SIGHUP reads them at once."""
    crl_fetch: bool = False
    """Fetch CRLs over HTTP from `crl_urls` and the http:// distribution points of the trusted
    CAs and of the card certificates they signed (learned at enrolment)."""
    crl_urls: tuple[str, ...] = ()
    crl_fetch_seconds: Annotated[float, above(0)] = 3600.0
    crl_fetch_timeout_seconds: Annotated[float, above(0)] = 10.0

    def __post_init__(self) -> None:
        _require(bool(self.trusted_ca), "card.trusted_ca must name at least one CA PEM file")
        _require(
            all(url.startswith("http://") for url in self.crl_urls),
            "card.crl_urls must be http:// URLs (CRLs are signed: no TLS is needed)",
        )


@dataclass(frozen=True)
class SmsSection:
    kind: SmsKind = SmsKind.OUTBOX
    outbox: FilePath = "sms-outbox.jsonl"
    url: str = ""
    timeout_seconds: Annotated[float, above(0)] = 5.0
    """http: per attempt."""
    retries: Annotated[int, between(0, 10)] = 2
    """http: attempts after the first, on 5xx, 429, timeouts and connection failures."""
    retry_backoff_seconds: Annotated[float, at_least(0)] = 0.5
    """http: the wait before the first retry, doubling before each further one."""
    bearer_token_file: FilePath = ""
    """http: a file holding the gateway's API token (sent as Authorization: Bearer)."""
    push_outbox: FilePath = "push-outbox"
    """Directory of per-device push outboxes (`otphsm.gateways.push_outbox`): a file a serial."""

    def __post_init__(self) -> None:
        if self.kind == SmsKind.HTTP:
            _require(
                self.url.startswith(("http://", "https://")),
                "sms.url must be an http:// or https:// URL when sms.kind = http",
            )


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: Port = 9464


@dataclass(frozen=True)
class HttpSection:
    """The HTTP/JSON API (`otphsm.service.http`): off unless enabled. It uses the [server]
    section's TLS files and client CA (mTLS, the same roles) or, like gRPC, no TLS when
    server.insecure is set."""

    enabled: bool = False
    address: str = "127.0.0.1"
    port: Port = 8443
    max_connections: Annotated[int, at_least(1)] = 256
    """Connections served at once (a thread each); one more is closed at once."""


@dataclass(frozen=True)
class RateLimitSection:
    """Failed code checks per caller: see `otphsm.service.ratelimit`."""

    enabled: bool = True
    failures_per_second: Annotated[float, above(0)] = 10.0
    """Failed code checks a caller may sustain, per second."""
    burst: Annotated[int, at_least(1)] = 100
    """Failed code checks a caller may make at once after a quiet spell."""


class OobChallenge(enum.StrEnum):
    OFF = "off"
    """An empty password is refused."""
    SMS = "sms"
    """An empty password sends a login code by SMS and answers Access-Challenge."""
    PUSH = "push"
    """The same, the code pushed to the citizen's token app."""


MIN_RADIUS_SECRET = 16
"""Bytes: a short shared secret can be guessed offline from one captured exchange."""


@dataclass(frozen=True)
class RadiusClientSection:
    """A NAS (VPN concentrator, Wi-Fi controller, pam_radius host) allowed to ask."""

    name: str = ""
    """The caller's name in the audit log (`radius:NAME`) and its failed-check budget's."""
    addresses: tuple[str, ...] = ()
    """Source IP addresses the NAS sends from; packets from any other address are dropped."""
    secret_file: FilePath = ""
    """A file holding the shared secret (at least 16 bytes; surrounding whitespace ignored)."""
    failures_per_second: Annotated[float, above(0)] = 10.0
    """Failed code checks this NAS may sustain, per second (then Access-Reject, unchecked)."""
    burst: Annotated[int, at_least(1)] = 100
    """Failed code checks this NAS may make at once after a quiet spell."""
    require_prefix: bool = False
    """Every code is typed after the citizen's 4-character personal part."""
    oob_challenge: OobChallenge = OobChallenge.OFF
    """What an empty password does for a citizen without a Security Card."""

    def __post_init__(self) -> None:
        _require(bool(self.name), "radius.clients[].name must be set")
        _require(bool(self.addresses), f"radius client {self.name}: addresses must be set")
        for address in self.addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigurationError(
                    f"radius client {self.name}: addresses must be IP addresses"
                ) from None
        _require(bool(self.secret_file), f"radius client {self.name}: secret_file must be set")

    def secret(self) -> bytes:
        try:
            secret = Path(self.secret_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read radius client {self.name}'s secret_file: {exc.strerror}"
            ) from None
        _require(
            len(secret) >= MIN_RADIUS_SECRET,
            f"radius client {self.name}: the secret must be at least {MIN_RADIUS_SECRET} bytes",
        )
        return secret


@dataclass(frozen=True)
class RadiusSection:
    """The RADIUS front end (`otphsm.service.radius`): off unless enabled."""

    enabled: bool = False
    address: str = "127.0.0.1"
    port: Port = 1812
    workers: Annotated[int, at_least(1)] = 8
    """Requests handled at once."""
    answer_cache_seconds: Annotated[int, between(1, 300)] = 30
    """How long an answer is kept for a retransmission of its request (RFC 5080 §2.2.2)."""
    clients: tuple[RadiusClientSection, ...] = ()

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        _require(bool(self.clients), "radius.clients must declare at least one NAS")
        names = [client.name for client in self.clients]
        _require(len(set(names)) == len(names), "radius.clients: names must differ")
        addresses = [a for client in self.clients for a in client.addresses]
        _require(
            len(set(addresses)) == len(addresses),
            "radius.clients: an address belongs to one NAS only",
        )


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
    http: HttpSection = field(default_factory=HttpSection)
    radius: RadiusSection = field(default_factory=RadiusSection)

    def server_model(self) -> ServerModel:
        """`server.model`, "auto" decided by the store's engine."""
        if self.server.model is not ServerModel.AUTO:
            return self.server.model
        sqlite = self.store.url.partition(":")[0] == "sqlite"
        return ServerModel.EVENT_LOOP if sqlite else ServerModel.THREADS

    def __post_init__(self) -> None:
        _require(
            self.server.processes == 1 or self.card.readers is ReaderKind.NONE,
            "server.processes must be 1 with card.readers = pcsc (one process owns the readers)",
        )


SECTIONS: dict[str, type[Any]] = {
    "server": ServerSection,
    "hsm": HsmSection,
    "store": StoreSection,
    "card": CardSection,
    "sms": SmsSection,
    "policy": AppPolicy,
    "verification": VerificationPolicy,
    "metrics": MetricsSection,
    "ratelimit": RateLimitSection,
    "http": HttpSection,
    "radius": RadiusSection,
}


def load_config(path: Path, env: Mapping[str, str] | None = None) -> ServiceConfig:
    return config_from_mapping(
        read_toml(path), base=path.parent, env=os.environ if env is None else env
    )


def config_from_mapping(
    raw: Mapping[str, Any], *, base: Path, env: Mapping[str, str]
) -> ServiceConfig:
    _refuse_two_pins(raw, env)
    env = {ENV_ALIASES.get(key, key): value for key, value in env.items()}
    parsed = sections_from_mapping(raw, SECTIONS, base=base, env=env)
    verification = parsed.pop("verification")
    parsed["policy"] = dataclasses.replace(parsed["policy"], verification=verification)
    store: StoreSection = parsed["store"]
    parsed["store"] = dataclasses.replace(store, url=resolve_store_url(store.url, base))
    return ServiceConfig(**parsed)


def _refuse_two_pins(raw: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """A PIN from the environment beside a PIN file (e.g. the file of `otphsm sim hsm init`
    sourced for a config with user_pin_file): say which variable is the cause."""
    hsm = raw.get("hsm")
    table = hsm if isinstance(hsm, dict) else {}
    from_env = [name for name in ("OTPHSM_HSM_PIN", "OTPHSM_HSM_USER_PIN") if env.get(name)]
    file_given = bool(table.get("user_pin_file") or env.get("OTPHSM_HSM_USER_PIN_FILE"))
    if from_env and file_given:
        raise ConfigurationError(
            f"hsm.user_pin is set by ${from_env[0]} in the environment and hsm.user_pin_file "
            f"too: set exactly one (unset {from_env[0]}, or leave user_pin_file out)"
        )
