"""`otphsm serve` configuration (TOML, env overrides, validation), the composition root, and the
one error table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from otphsm.core.certificates import CardCheckFailed, CardCheckFailure
from otphsm.core.errors import (
    AuthorisationRefused,
    ConfigurationError,
    DeviceRefused,
    DeviceUnavailable,
    FailedPrecondition,
    InvalidInput,
    NotFound,
)
from otphsm.core.seeds import SeedStorage
from otphsm.hsm.errors import HsmPinIncorrect, HsmUnavailable
from otphsm.hsm.mechanisms import WrapMechanism
from otphsm.service.config import (
    ReaderKind,
    ServerModel,
    SmsKind,
    config_from_mapping,
    load_config,
)
from otphsm.service.errors import INTERNAL_MESSAGE, status_for
from otphsm.service.logs import LogFormat, LogLevel
from otphsm.smartcard.errors import WrongPin
from otphsm.store.errors import StoreUnavailable

PIN = "s3cret-pin-0042"
MINIMAL = """
[server]
port = 7000
tls_cert = "tls/server.pem"
tls_key = "tls/server-key.pem"
tls_client_ca = "tls/ca.pem"

[hsm]
token_label = "otphsm"
user_pin = "s3cret-pin-0042"

[store]
url = "sqlite:///var/lib/otphsm/otphsm.db"

[card]
trusted_ca = ["cns/ca1.pem", "/etc/otphsm/ca2.pem"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "otphsm.toml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as refused:
        load_config(write(tmp_path, text), env or {})
    message = str(refused.value)
    assert PIN not in message
    return message


def test_a_minimal_file_with_defaults_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    assert config.server.port == 7000 and config.server.address == "127.0.0.1"
    assert config.server.tls_cert == str(tmp_path / "tls/server.pem")
    assert config.card.trusted_ca == (str(tmp_path / "cns/ca1.pem"), "/etc/otphsm/ca2.pem")
    # Default paths too sit beside the file, whatever directory the service starts in.
    assert config.sms.outbox == str(tmp_path / "sms-outbox.jsonl")
    assert config.sms.push_outbox == str(tmp_path / "push-outbox")
    assert config.sms.bearer_token_file == ""
    assert config.hsm.pin() == PIN and config.hsm.seed_storage == "wrapped"
    assert config.policy.challenge_seconds == 60
    assert config.policy.verification.lock_seconds == 60
    assert config.metrics.enabled and config.metrics.port == 9464
    assert PIN not in repr(config) and PIN not in str(config)


def test_environment_overrides_every_key(tmp_path: Path) -> None:
    env = {
        "OTPHSM_SERVER_PORT": "7443",
        "OTPHSM_SERVER_INSECURE": "true",
        "OTPHSM_HSM_PIN": "from-env",  # the name `otphsm sim hsm init` prints
        "OTPHSM_CARD_TRUSTED_CA": "a.pem, b.pem",
        "OTPHSM_METRICS_ENABLED": "false",
        "OTPHSM_POLICY_ISSUER": "Provincia (TEST)",
        "OTPHSM_VERIFICATION_LOCK_SECONDS": "120",
        "OTPHSM_REQUIRE_DEVICES": "1",  # not ours: ignored
    }
    config = load_config(write(tmp_path, MINIMAL), env)
    assert config.server.port == 7443 and config.server.insecure
    assert config.hsm.pin() == "from-env"
    assert config.card.trusted_ca == (str(tmp_path / "a.pem"), str(tmp_path / "b.pem"))
    assert not config.metrics.enabled
    assert config.policy.issuer == "Provincia (TEST)"
    assert config.policy.verification.lock_seconds == 120


def test_the_pin_may_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text(PIN + "\n")
    text = MINIMAL.replace(f'user_pin = "{PIN}"', 'user_pin_file = "pin"')
    assert load_config(write(tmp_path, text), {}).hsm.pin() == PIN


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("[store]", "[stor]"), "unknown section(s) ['stor']"),
        (("port = 7000", "port = 7000\nprot = 1"), "unknown key(s) ['prot'] in [server]"),
        (("port = 7000", 'port = "7000"'), "server.port must be an integer"),
        (("port = 7000", "port = 70000"), "server.port must be 0..65535"),
        (("port = 7000", "port = 7000\nmax_workers = 0"), "server.max_workers must be >= 1"),
        (
            ("port = 7000", 'port = 7000\nmodel = "fibers"'),
            "server.model must be one of ['auto', 'threads', 'event-loop']",
        ),
        (
            ("port = 7000", 'port = 7000\nlog_format = "xml"'),
            "server.log_format must be one of ['json', 'text']",
        ),
        (('tls_key = "tls/server-key.pem"', ""), "server.tls_key must be set"),
        (('user_pin = "s3cret-pin-0042"', ""), "exactly one of hsm.user_pin"),
        (('user_pin = "s3cret-pin-0042"', 'user_pin = "x"\nuser_pin_file = "p"'), "exactly one"),
        (
            ('token_label = "otphsm"', 'token_label = "otphsm"\nseed_storage = "cloud"'),
            "hsm.seed_storage must be one of",
        ),
        (
            ('token_label = "otphsm"', 'token_label = "otphsm"\nwrap_mechanism = "DES"'),
            "hsm.wrap_mechanism must be one of",
        ),
        (
            ('trusted_ca = ["cns/ca1.pem", "/etc/otphsm/ca2.pem"]', "trusted_ca = []"),
            "card.trusted_ca must name",
        ),
        (
            ('trusted_ca = ["cns/ca1.pem", "/etc/otphsm/ca2.pem"]', 'trusted_ca = "one.pem"'),
            "card.trusted_ca must be a list of strings",
        ),
        (("[card]", '[card]\nreaders = "usb"'), "card.readers must be one of"),
        (("[card]", "[policy]\nchallenge_seconds = 0\n[card]"), "policy.challenge_seconds must"),
        (("[card]", "[policy]\nnonsense = 1\n[card]"), "unknown key(s) ['nonsense'] in [policy]"),
        (("[card]", "[policy]\ngrid_cells = 9\n[card]"), "policy.grid_cells must be 10..100"),
        (
            ("[card]", "[verification]\nlock_after_failures = 0\n[card]"),
            "verification.lock_after_failures must be >= 1",
        ),
        (("[server]", "[server\n"), "not valid TOML"),
    ],
)
def test_invalid_configurations_are_refused_clearly(
    tmp_path: Path, change: tuple[str, str], says: str
) -> None:
    old, new = change
    assert old in MINIMAL
    assert says in config_error(tmp_path, MINIMAL.replace(old, new, 1))


def test_choices_are_parsed_once_into_their_enums(tmp_path: Path) -> None:
    text = MINIMAL.replace("port = 7000", 'port = 7000\nlog_level = "debug"')
    env = {"OTPHSM_HSM_WRAP_MECHANISM": "AES_CBC_PAD", "OTPHSM_CARD_READERS": "pcsc"}
    config = load_config(write(tmp_path, text), env)
    assert config.server.log_level is LogLevel.DEBUG
    assert config.server.log_format is LogFormat.JSON
    assert config.hsm.seed_storage is SeedStorage.WRAPPED
    assert config.hsm.wrap_mechanism is WrapMechanism.AES_CBC_PAD
    assert config.card.readers is ReaderKind.PCSC and config.sms.kind is SmsKind.OUTBOX
    message = config_error(tmp_path, MINIMAL, {"OTPHSM_CARD_READERS": "usb"})
    assert "OTPHSM_CARD_READERS must be one of ['none', 'pcsc']" in message


@pytest.mark.parametrize(
    ("url", "model", "serves_with"),
    [
        ("sqlite:///otphsm.db", "auto", ServerModel.EVENT_LOOP),
        ("postgresql://otphsm@db.example/otphsm", "auto", ServerModel.THREADS),
        ("sqlite:///otphsm.db", "threads", ServerModel.THREADS),
        ("postgresql://otphsm@db.example/otphsm", "event-loop", ServerModel.EVENT_LOOP),
    ],
)
def test_the_server_model_auto_is_chosen_by_the_stores_engine(
    tmp_path: Path, url: str, model: str, serves_with: ServerModel
) -> None:
    env = {"OTPHSM_STORE_URL": url, "OTPHSM_SERVER_MODEL": model}
    assert load_config(write(tmp_path, MINIMAL), env).server_model() is serves_with


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL, {"OTPHSM_SERVER_PORT": "many"})
    assert "OTPHSM_SERVER_PORT must be a number" in message


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(tmp_path / "absent.toml", {})


def _raw(tmp_path: Path, **store: Any) -> dict[str, Any]:
    ca = tmp_path / "ca.pem"
    return {
        "server": {"insecure": True},
        "hsm": {"token_label": "otphsm", "user_pin": PIN},
        "store": store,
        "card": {"trusted_ca": [str(ca)]},
    }


def test_the_composition_root_fails_loudly_on_what_it_does_not_know(
    tmp_path: Path, card_ca_files: tuple[Path, Path]
) -> None:
    from otphsm.service.assembly import assemble

    config = config_from_mapping(_raw(tmp_path, url="mysql://db/otphsm"), base=tmp_path, env={})
    with pytest.raises(ConfigurationError, match=r"card\.trusted_ca file"):
        assemble(config)
    (tmp_path / "ca.pem").write_bytes(card_ca_files[0].read_bytes())
    with pytest.raises(ConfigurationError, match=r"unsupported store URL scheme 'mysql'"):
        assemble(config)
    (tmp_path / "ca.pem").write_bytes(b"not a certificate")
    with pytest.raises(ConfigurationError, match="do not parse"):
        assemble(config)


ERROR_CASES = [
    (InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT"),
    (NotFound("none"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    (
        FailedPrecondition("wait", retry_after=42),
        grpc.StatusCode.FAILED_PRECONDITION,
        "FAILED_PRECONDITION",
    ),
    (AuthorisationRefused("no"), grpc.StatusCode.FAILED_PRECONDITION, "AUTHORISATION_REFUSED"),
    (
        CardCheckFailed(CardCheckFailure.REVOKED, "serial 7"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REVOKED",
    ),
    (HsmPinIncorrect("pin"), grpc.StatusCode.UNAVAILABLE, "CONFIGURATION"),
    (HsmUnavailable("gone"), grpc.StatusCode.UNAVAILABLE, "DEVICE_UNAVAILABLE"),
    (StoreUnavailable("down"), grpc.StatusCode.UNAVAILABLE, "DEVICE_UNAVAILABLE"),
    (WrongPin(2, sw=0x63C2), grpc.StatusCode.FAILED_PRECONDITION, "DEVICE_REFUSED"),
    (DeviceRefused("no"), grpc.StatusCode.FAILED_PRECONDITION, "DEVICE_REFUSED"),
    (DeviceUnavailable("later"), grpc.StatusCode.UNAVAILABLE, "DEVICE_UNAVAILABLE"),
]


@pytest.mark.parametrize(("error", "code", "reason"), ERROR_CASES)
def test_one_table_maps_error_categories_to_status_codes(
    error: Exception, code: grpc.StatusCode, reason: str
) -> None:
    mapped = status_for(error)
    assert (mapped.code, mapped.expected) == (code, True)
    if isinstance(error, StoreUnavailable):  # a driver's text stays in the log
        assert mapped.message == "the database is unavailable; try again"
    else:
        assert mapped.message == str(error)
    metadata = dict(mapped.metadata)
    assert metadata["otphsm-reason"] == reason
    assert ("retry-after-seconds" in metadata) == isinstance(error, FailedPrecondition)


def test_anything_else_is_internal_with_a_generic_message() -> None:
    mapped = status_for(KeyError("seed=0xdeadbeef"))
    assert mapped.code is grpc.StatusCode.INTERNAL and not mapped.expected
    assert mapped.message == INTERNAL_MESSAGE and "deadbeef" not in mapped.message
    assert mapped.metadata == ()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # SQLAlchemy's reading: three slashes then a relative path, four for an absolute one.
        ("sqlite:///otphsm.db", "sqlite:///{base}/otphsm.db"),
        ("sqlite:///var/otphsm.db", "sqlite:///{base}/var/otphsm.db"),
        ("sqlite:var/otphsm.db", "sqlite:///{base}/var/otphsm.db"),
        ("sqlite:////srv/otphsm.db", "sqlite:////srv/otphsm.db"),
        ("sqlite::memory:", "sqlite::memory:"),
        ("postgresql://otphsm@db/otphsm", "postgresql://otphsm@db/otphsm"),
    ],
)
def test_a_relative_sqlite_file_sits_beside_the_config_file(
    tmp_path: Path, url: str, expected: str
) -> None:
    text = MINIMAL.replace('"sqlite:///var/lib/otphsm/otphsm.db"', f'"{url}"')
    config = load_config(write(tmp_path, text), {})
    assert config.store.url == expected.format(base=tmp_path)


def test_a_pin_from_the_environment_beside_a_pin_file_names_the_variable(tmp_path: Path) -> None:
    text = MINIMAL.replace('user_pin = "s3cret-pin-0042"', 'user_pin_file = "hsm/user-pin"')
    message = config_error(tmp_path, text, {"OTPHSM_HSM_PIN": PIN})
    assert "$OTPHSM_HSM_PIN" in message and "user_pin_file" in message


def test_softhsm_conf_is_a_path_beside_the_file(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'token_label = "otphsm"', 'token_label = "otphsm"\nsofthsm_conf = "hsm/s.conf"'
    )
    config = load_config(write(tmp_path, text), {})
    assert config.hsm.softhsm_conf == str(tmp_path / "hsm/s.conf")


def test_several_server_processes_but_not_with_the_servers_own_readers(tmp_path: Path) -> None:
    several = MINIMAL.replace("port = 7000", "port = 7000\nprocesses = 2")
    assert load_config(write(tmp_path, several), {}).server.processes == 2
    assert load_config(write(tmp_path, MINIMAL), {}).server.processes == 1
    readers = several.replace("[card]", '[card]\nreaders = "pcsc"')
    assert "server.processes must be 1 with card.readers = pcsc" in config_error(tmp_path, readers)
    assert "server.processes must be >= 0" in config_error(
        tmp_path, MINIMAL.replace("port = 7000", "port = 7000\nprocesses = -1")
    )
