"""Shared test plumbing.

Tests that need a device or service (SoftHSM2, pcscd+vpcd, OpenSC tools, PostgreSQL) skip with a
reason on a machine that lacks it. With OTPHSM_REQUIRE_DEVICES=1 (set by .ci/run) every skip
becomes a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

REQUIRE_DEVICES = os.environ.get("OTPHSM_REQUIRE_DEVICES") == "1"

pytest_plugins = [
    "support.hsm_fixtures",
    "support.card_fixtures",
    "support.pcsc_fixtures",
    "support.app_fixtures",
    "support.store_fixtures",
    "support.service_fixtures",
    "support.factor_fixtures",
    "support.http_fixtures",
    "support.api_package",
    "support.radius_support",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The deployment tests (containers, minutes) run only when `-m` names them
    (`make test-deploy`), never as part of `make test`."""
    if "deploy" in (config.getoption("markexpr") or ""):
        return
    deploy = [item for item in items if item.get_closest_marker("deploy")]
    if deploy:
        config.hook.pytest_deselected(items=deploy)
        items[:] = [item for item in items if not item.get_closest_marker("deploy")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_DEVICES and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and skips fail under OTPHSM_REQUIRE_DEVICES=1: {reason}"
