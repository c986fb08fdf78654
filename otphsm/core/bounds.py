"""Numeric bounds declared beside a dataclass field, for whoever builds it from outside data.

    port: Annotated[int, between(0, 65535)] = 50051
    grace_seconds: Annotated[float, at_least(0)] = 10.0
    timeout_seconds: Annotated[float, above(0)] = 5.0

The configuration loader reads them (`bounds_of`) to refuse a value with the key's name; a
dataclass may also hold them at construction (`check_bounds` in `__post_init__`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Any, get_args, get_origin, get_type_hints


@dataclass(frozen=True, slots=True)
class Bounds:
    low: float
    high: float | None = None
    low_excluded: bool = False

    def admits(self, value: float) -> bool:
        if value < self.low or (self.low_excluded and value == self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        """What a message says after "must be": "0..65535", ">= 1", "> 0"."""
        if self.high is not None:
            return f"{self.low}..{self.high}"
        return f"{'>' if self.low_excluded else '>='} {self.low}"


def at_least(low: float) -> Bounds:
    return Bounds(low)


def above(low: float) -> Bounds:
    return Bounds(low, low_excluded=True)


def between(low: float, high: float) -> Bounds:
    """Both ends included."""
    return Bounds(low, high)


def bounds_of(cls: type[Any]) -> dict[str, Bounds]:
    """The bounds declared on `cls`'s fields (`Annotated[..., Bounds]`), by field name."""
    hints = get_type_hints(cls, include_extras=True)
    found: dict[str, Bounds] = {}
    for item in fields(cls):
        hint = hints.get(item.name)
        if get_origin(hint) is Annotated:
            for mark in get_args(hint)[1:]:
                if isinstance(mark, Bounds):
                    found[item.name] = mark
    return found


def check_bounds(instance: Any) -> None:
    """Raise ValueError naming the first field of a dataclass instance outside its bounds."""
    for name, bounds in bounds_of(type(instance)).items():
        value = getattr(instance, name)
        if not bounds.admits(value):
            raise ValueError(f"{name} must be {bounds}, got {value}")
