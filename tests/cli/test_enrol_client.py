"""The client side the CLIs share: where the connection settings come from, how a failed call
becomes one typed error, and which exit code each error gives."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from otphsm.cli.ui import ExitCode, exit_code_for
from otphsm.client import (
    REASON_KEY,
    AuthorisationRefused,
    ServiceRefused,
    ServiceUnavailable,
    client_config,
    service_error,
)
from otphsm.core import errors as core_errors
from otphsm.core.errors import ConfigurationError, InvalidInput, NotFound
from otphsm.simulators.token.mobile_app import WrongAppPin
from otphsm.smartcard.errors import CardRemoved, WrongPin


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, metadata: tuple = ()) -> None:
        self._code, self._details, self._metadata = code, details, metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._metadata


def test_a_config_file_with_paths_relative_to_it_then_flags_override(tmp_path: Path) -> None:
    (tmp_path / "station").mkdir()
    config = tmp_path / "station" / "client.toml"
    config.write_text(
        '[client]\nserver = "otp.example.org:443"\nca = "pki/ca.pem"\n'
        'cert = "pki/enroller.pem"\nkey = "pki/enroller-key.pem"\ntimeout_seconds = 4\n'
    )
    loaded = client_config("enroller", config_file=config)
    assert loaded.server == "otp.example.org:443" and loaded.timeout == 4
    assert loaded.ca == tmp_path / "station" / "pki" / "ca.pem"
    overridden = client_config("enroller", config_file=config, server="localhost:1", pki=tmp_path)
    assert overridden.server == "localhost:1"
    assert (overridden.cert, overridden.key) == (
        tmp_path / "enroller.pem",
        tmp_path / "enroller-key.pem",
    )


def test_missing_or_unknown_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--server"):
        client_config("device", pki=tmp_path)
    config = tmp_path / "client.toml"
    config.write_text('[client]\nserver = "h:1"\npassword = "x"\n')
    with pytest.raises(ConfigurationError, match=r"unknown key\(s\) \['password'\]"):
        client_config("device", config_file=config)
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        client_config("device", pki=tmp_path, server="nohostport")


def test_a_refusal_keeps_the_reason_and_the_wait() -> None:
    error = service_error(
        FakeRpcError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "too many wrong codes: wait before trying again",
            (("otphsm-reason", "FAILED_PRECONDITION"), ("retry-after-seconds", "42")),
        ),
        "h:1",
    )
    assert isinstance(error, ServiceRefused)
    assert (error.code, error.reason, error.retry_after) == (
        "FAILED_PRECONDITION",
        "FAILED_PRECONDITION",
        42,
    )
    assert str(error) == (
        "the service refused: too many wrong codes: wait before trying again (try again in 42 s)"
    )
    assert exit_code_for(error) is ExitCode.REFUSED


def test_a_refused_authorisation_has_its_own_type() -> None:
    error = service_error(
        FakeRpcError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "the code is wrong or expired",
            ((REASON_KEY, "AUTHORISATION_REFUSED"),),
        ),
        "h:1",
    )
    assert isinstance(error, AuthorisationRefused) and isinstance(error, ServiceRefused)
    assert isinstance(error, core_errors.AuthorisationRefused)
    assert exit_code_for(error) is ExitCode.REFUSED
    other = service_error(
        FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "no", ((REASON_KEY, "EXPIRED"),)), "h:1"
    )
    assert type(other) is ServiceRefused


def test_an_unreachable_service_is_one_line() -> None:
    error = service_error(
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect\nmore detail"), "h:1"
    )
    assert isinstance(error, ServiceUnavailable)
    assert str(error) == "the service at h:1 cannot be reached (UNAVAILABLE): failed to connect"
    assert exit_code_for(error) is ExitCode.UNREACHABLE


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CardRemoved("the card left"), ExitCode.CARD),
        (WrongPin(2, sw=0x63C2), ExitCode.CARD),
        (WrongAppPin(3), ExitCode.REFUSED),
        (NotFound("no such account"), ExitCode.REFUSED),
        (InvalidInput("bad"), ExitCode.INVALID),
        (ConfigurationError("no file"), ExitCode.INVALID),
        (ServiceRefused("x", code="INVALID_ARGUMENT"), ExitCode.INVALID),
        (ServiceRefused("x", code="PERMISSION_DENIED"), ExitCode.REFUSED),
    ],
)
def test_exit_codes(error: Exception, code: ExitCode) -> None:
    assert exit_code_for(error) is code  # type: ignore[arg-type]
