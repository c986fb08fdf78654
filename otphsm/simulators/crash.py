"""Test only: end `otphsm serve` at a named write point of a use case's unit of work
(`App.transaction`: `<use case>.before_commit`, `<use case>.after_commit`), as a power cut
or kill -9 would, for the crash tests (tests/faults/test_crash_points.py).

It takes two environment variables, and only `otphsm serve` started by the CLI reads them,
through this module, which no production package imports:

    OTPHSM_TEST_FAULTS=crash-at-write-point   the switch, spelled out so it is never set by
                                              accident (any other value: refused at start)
    OTPHSM_TEST_CRASH_AT=issuance.before_commit   where to end

Without the switch nothing is read and the `App` has no hook: a write point then costs one
`is None` test. With it, serve logs a warning naming the point at start-up. The variables are
outside the configuration file on purpose: an operator's file or `OTPHSM_<SECTION>_<KEY>`
override cannot turn it on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from otphsm.core.errors import ConfigurationError

SWITCH = "OTPHSM_TEST_FAULTS"
SWITCH_VALUE = "crash-at-write-point"
CRASH_AT = "OTPHSM_TEST_CRASH_AT"
EXIT_STATUS = 86
"""What the process ends with at the write point (the tests check it died there)."""


def crash_env(write_point: str) -> dict[str, str]:
    """The environment that makes a serve process end at `write_point`."""
    return {SWITCH: SWITCH_VALUE, CRASH_AT: write_point}


def crash_hook_from_env(env: Mapping[str, str]) -> Callable[[str], None] | None:
    """None unless the switch is set; then a hook that ends the process at the named point."""
    switch = env.get(SWITCH)
    if switch is None:
        return None
    if switch != SWITCH_VALUE:
        raise ConfigurationError(f"{SWITCH} has one accepted value, {SWITCH_VALUE!r}")
    target = env.get(CRASH_AT, "")
    if "." not in target:
        raise ConfigurationError(f"{CRASH_AT} must name a write point: <use case>.<point>")

    def crash_at(write_point: str) -> None:
        if write_point == target:
            os.write(2, f"otphsm: test crash at write point {write_point}\n".encode())
            os._exit(EXIT_STATUS)

    return crash_at
