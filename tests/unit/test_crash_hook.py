"""The test-only write-point hook (`otphsm.simulators.crash`): off unless its switch is spelled
out, refused when set wrongly, and it ends the process only at the point named."""

from __future__ import annotations

import pytest

from otphsm.core.errors import ConfigurationError
from otphsm.simulators.crash import CRASH_AT, SWITCH, crash_env, crash_hook_from_env


def test_no_switch_no_hook_even_with_a_point_named() -> None:
    assert crash_hook_from_env({}) is None
    assert crash_hook_from_env({CRASH_AT: "issuance.before_commit"}) is None


@pytest.mark.parametrize(
    "env",
    [
        {SWITCH: "1", CRASH_AT: "issuance.before_commit"},
        {SWITCH: "true"},
        crash_env("issuance"),  # not <use case>.<point>
        crash_env(""),
    ],
)
def test_a_switch_set_wrongly_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        crash_hook_from_env(env)


def test_the_hook_lets_other_points_pass() -> None:
    hook = crash_hook_from_env(crash_env("issuance.before_commit"))
    assert hook is not None
    hook("issuance.after_commit")
    hook("activation.before_commit")  # still here: only the named point ends the process
