"""Read, decide, write conditionally, and on a lost race read and decide again: the one loop
every use case that makes a conditional write (`Store.update_*`) runs."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, TypeVar

from otphsm.core.app.context import App
from otphsm.core.errors import DeviceUnavailable

T = TypeVar("T")


class LostRace(enum.Enum):
    LOST_RACE = "lost race"


LOST_RACE: Final = LostRace.LOST_RACE
"""What an attempt returns when its conditional write matched nothing (another writer came
first): the attempt runs again on a fresh read."""

CONTENDED = "the record is being written by too many callers at once: try again"
"""The one answer when every attempt lost its race (`AppPolicy.write_attempts`)."""


def with_retries(app: App, attempt: Callable[[], T | LostRace]) -> T:
    """Run `attempt` (read, decide, write conditionally) until it returns something other
    than `LOST_RACE`, at most `app.policy.write_attempts` times; then `DeviceUnavailable`."""
    for _ in range(app.policy.write_attempts):
        result = attempt()
        if not isinstance(result, LostRace):
            return result
    raise DeviceUnavailable(CONTENDED)
