"""Deployment mistakes each give one clear, actionable error, without secrets in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hsm_fixtures import BARE_TOKEN

from otphsm.core.errors import ConfigurationError
from otphsm.hsm import HsmConfig, open_vault
from otphsm.hsm.errors import HsmKeyMissing, HsmLibraryNotFound, HsmPinIncorrect, HsmTokenNotFound

pytestmark = pytest.mark.softhsm


def test_missing_library(softhsm) -> None:  # type: ignore[no-untyped-def]
    config = softhsm.hsm_config(module="/nonexistent/libpkcs11-hsm.so")
    with pytest.raises(HsmLibraryNotFound) as err:
        open_vault(config)
    assert isinstance(err.value, ConfigurationError)
    assert "/nonexistent/libpkcs11-hsm.so" in str(err.value)
    assert "hsm.module" in str(err.value)


def test_a_file_that_is_not_a_pkcs11_library(softhsm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bogus = tmp_path / "libbogus.so"
    bogus.write_text("not a shared object")
    with pytest.raises(HsmLibraryNotFound, match="cannot load the PKCS#11 module"):
        open_vault(softhsm.hsm_config(module=str(bogus)))


def test_wrong_pin(softhsm) -> None:  # type: ignore[no-untyped-def]
    wrong = "not-the-pin-4711"
    with pytest.raises(HsmPinIncorrect) as err:
        open_vault(softhsm.token(BARE_TOKEN).hsm_config(user_pin=wrong))
    assert err.value.ckr == 0xA0
    assert "CKR_PIN_INCORRECT" in str(err.value)
    assert wrong not in str(err.value) and softhsm.user_pin not in str(err.value)


def test_missing_token(softhsm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HsmTokenNotFound) as err:
        open_vault(softhsm.hsm_config(token_label="no-such-token"))
    message = str(err.value)
    assert "'no-such-token'" in message
    assert "otphsm sim hsm init" in message
    assert "'otphsm'" in message  # names the tokens that are there


def test_missing_kek(softhsm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HsmKeyMissing) as err:
        open_vault(softhsm.token(BARE_TOKEN).hsm_config())
    assert "'otphsm-kek'" in str(err.value)
    assert "otphsm admin hsm-init" in str(err.value)


def test_unknown_wrap_mechanism_is_refused(softhsm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="AES_KEY_WRAP_PAD"):
        open_vault(softhsm.hsm_config(wrap_mechanism="DES3_CBC"))


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        HsmConfig(token_label="", user_pin="x")
    with pytest.raises(ValueError):
        HsmConfig(token_label="t", user_pin="x", max_attempts=0)
    assert "x" not in repr(HsmConfig(token_label="t", user_pin="x")).replace("max_", "")
