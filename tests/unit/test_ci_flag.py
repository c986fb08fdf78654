"""OTPHSM_REQUIRE_DEVICES=1 turns every skip into a failure, so CI cannot pass by skipping.

Each test runs a small pytest session in-process (`pytester`) whose conftest takes its
`pytest_runtest_makereport` hook from the real tests/conftest.py, loaded afresh inside that
session so it reads the environment variable as the test set it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parents[1]
REAL_CONFTEST = TESTS_DIR / "conftest.py"
FLAG = "OTPHSM_REQUIRE_DEVICES"

# Loads the real conftest as a private module (not the `support.*` fixture plugins it lists:
# only its hook), so its import-time reading of the flag happens inside the inner run.
INNER_CONFTEST = f"""
import importlib.util

_spec = importlib.util.spec_from_file_location("_otphsm_real_conftest", {str(REAL_CONFTEST)!r})
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)
pytest_runtest_makereport = _real.pytest_runtest_makereport
"""

INNER_TESTS = """
import pytest
from support.requirements import require_tool


@pytest.fixture
def missing_device():
    return require_tool("otphsm-no-such-device-tool", "otphsm-no-such-package")


def test_calls_skip():
    pytest.skip("no reader in this room")


@pytest.mark.skipif(True, reason="marked away")
def test_marked_skipif():
    pass


def test_uses_a_skipping_fixture(missing_device):
    pass


def test_passes():
    assert 1 + 1 == 2


@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_devices=INNER_TESTS)
    pytester.syspathinsert(TESTS_DIR)  # for `support.requirements`
    return pytester


def test_with_the_flag_every_skip_fails_the_run(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLAG, "1")
    result = inner.runpytest("-rA")
    # The skip in the test body fails the call phase (FAILED); skipif and the fixture skip
    # happen in the setup phase, where a failed report is an ERROR. Both fail the run.
    result.assert_outcomes(passed=1, failed=1, errors=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random(
        [
            "FAILED test_devices.py::test_calls_skip*",
            "ERROR test_devices.py::test_marked_skipif*",
            "ERROR test_devices.py::test_uses_a_skipping_fixture*",
            "XFAIL test_devices.py::test_expected_failure*",
            "*skips fail under OTPHSM_REQUIRE_DEVICES=1*no reader in this room*",
            "*skips fail under OTPHSM_REQUIRE_DEVICES=1*marked away*",
            "*skips fail under OTPHSM_REQUIRE_DEVICES=1*otphsm-no-such-device-tool is not "
            "installed*",
        ]
    )
    assert "SKIPPED" not in result.stdout.str()


@pytest.mark.parametrize("value", [None, "0", ""], ids=["unset", "zero", "empty"])
def test_without_the_flag_skips_stay_skips(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(FLAG, raising=False)
    else:
        monkeypatch.setenv(FLAG, value)
    result = inner.runpytest("-rA")
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED*no reader in this room",
            "SKIPPED*marked away",
            "SKIPPED*otphsm-no-such-device-tool is not installed*",
        ]
    )
    assert "skips fail under" not in result.stdout.str()
