"""A TOML file, then environment overrides, into one frozen dataclass per section, validated.

The caller names its sections: `{section name: dataclass}`. A section's keys are its fields of
these types: str, int, float, bool, tuple[str, ...] (a TOML list of strings), any StrEnum
(one of its values) and a tuple of a dataclass (a TOML array of tables, `[[section.key]]`, each
built and checked as a section of its own, without environment overrides); fields of other
types (a nested policy) are not keys. Beside a field may be
declared bounds (`Annotated[int, at_least(1)]`, see `otphsm.core.bounds`) or that it is a path
(`FilePath`, `FilePaths`: relative to the file's directory, defaults too, never to the cwd).

The loader refuses, naming the key: unknown sections and keys (with the known ones), values of
the wrong type, choices not offered, values out of bounds. Rules across fields stay in each
section's `__post_init__`. Every key may be overridden by `OTPHSM_<SECTION>_<KEY>` (lists
comma-separated, booleans true/false/1/0); a bad value there names the variable.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from otphsm.core.bounds import Bounds
from otphsm.core.errors import ConfigurationError

ENV_PREFIX = "OTPHSM_"


class _RelativeToFile:
    """Marks a field as a path (or paths) relative to the configuration file's directory."""


_RELATIVE = _RelativeToFile()
FilePath = Annotated[str, _RELATIVE]
FilePaths = Annotated[tuple[str, ...], _RELATIVE]

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class _Key:
    kind: Any
    bounds: Bounds | None
    relative: bool
    default: Any


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None


def load_sections(
    path: Path, sections: Mapping[str, type[Any]], env: Mapping[str, str]
) -> dict[str, Any]:
    """Each section of `path` built (absent ones from their defaults), by section name."""
    return sections_from_mapping(read_toml(path), sections, base=path.parent, env=env)


def sections_from_mapping(
    raw: Mapping[str, Any],
    sections: Mapping[str, type[Any]],
    *,
    base: Path,
    env: Mapping[str, str],
) -> dict[str, Any]:
    unknown = sorted(set(raw) - set(sections))
    _require(not unknown, f"unknown section(s) {unknown}; known: {sorted(sections)}")
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        table = raw.get(name, {})
        _require(isinstance(table, dict), f"[{name}] must be a table")
        built[name] = build_section(name, cls, table, base=base, env=env)
    return built


def build_section(
    name: str, cls: type[S], table: Mapping[str, Any], *, base: Path, env: Mapping[str, str]
) -> S:
    keys = _keys(cls)
    unknown = sorted(set(table) - set(keys))
    _require(not unknown, f"unknown key(s) {unknown} in [{name}]; known: {sorted(keys)}")
    values: dict[str, Any] = {}
    for key, spec in keys.items():
        where = f"{name}.{key}"
        if (item_kind := _table_kind(spec.kind)) is not None:
            if key in table:
                values[key] = _tables(table[key], item_kind, where, base)
            continue
        if key in table:
            values[key] = _typed(table[key], spec.kind, where)
        env_key = f"{ENV_PREFIX}{name}_{key}".upper()
        if env_key in env:
            values[key] = _from_env(env[env_key], spec.kind, env_key)
        if spec.bounds is not None and key in values:
            _require(spec.bounds.admits(values[key]), f"{where} must be {spec.bounds}")
        if spec.relative:
            values[key] = _resolve(values.get(key, spec.default), base)
    try:
        return cls(**values)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"[{name}]: {exc}") from None


def section_keys(cls: type[Any]) -> dict[str, Any]:
    """The keys of a section, in declaration order, with their defaults."""
    return {name: key.default for name, key in _keys(cls).items()}


def _keys(cls: type[Any]) -> dict[str, _Key]:
    hints = get_type_hints(cls, include_extras=True)
    keys: dict[str, _Key] = {}
    for item in dataclasses.fields(cls):
        hint = hints.get(item.name)
        marks: tuple[Any, ...] = ()
        if get_origin(hint) is Annotated:
            hint, *rest = get_args(hint)
            marks = tuple(rest)
        if not item.init or not _is_key_type(hint):
            continue
        bounds = next((mark for mark in marks if isinstance(mark, Bounds)), None)
        keys[item.name] = _Key(hint, bounds, _RELATIVE in marks, item.default)
    return keys


def _is_key_type(kind: Any) -> bool:
    if kind in (str, int, float, bool, tuple[str, ...]) or _table_kind(kind) is not None:
        return True
    return isinstance(kind, type) and issubclass(kind, enum.StrEnum)


def _table_kind(kind: Any) -> type[Any] | None:
    """X for tuple[X, ...] where X is a dataclass (an array of tables); else None."""
    if get_origin(kind) is not tuple:
        return None
    args = get_args(kind)
    if len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
        return args[0] if isinstance(args[0], type) else None
    return None


def _typed(value: Any, kind: Any, where: str) -> Any:
    if kind is bool:
        _require(isinstance(value, bool), f"{where} must be true or false")
        return value
    if kind is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer"
        )
        return value
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        _require(ok, f"{where} must be a number")
        return float(value)
    if kind is str:
        _require(isinstance(value, str), f"{where} must be a string")
        return value
    if kind == tuple[str, ...]:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        _require(ok, f"{where} must be a list of strings")
        return tuple(value)
    return _choice(value, kind, where)


def _tables(value: Any, kind: type[S], where: str, base: Path) -> tuple[S, ...]:
    ok = isinstance(value, list) and all(isinstance(item, dict) for item in value)
    _require(ok, f"{where} must be an array of tables ([[{where}]])")
    return tuple(
        build_section(f"{where}[{index}]", kind, item, base=base, env={})
        for index, item in enumerate(value)
    )


def _from_env(text: str, kind: Any, where: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        _require(lowered in ("true", "false", "1", "0"), f"{where} must be true or false")
        return lowered in ("true", "1")
    if kind is int or kind is float:
        try:
            return kind(text)
        except ValueError:
            raise ConfigurationError(f"{where} must be a number") from None
    if kind is str:
        return text
    if kind == tuple[str, ...]:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return _choice(text, kind, where)


def _choice(value: Any, kind: type[enum.StrEnum], where: str) -> enum.StrEnum:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(
            f"{where} must be one of {[member.value for member in kind]}"
        ) from None


def _resolve(value: str | tuple[str, ...], base: Path) -> str | tuple[str, ...]:
    if isinstance(value, tuple):
        return tuple(str(base / item) if item else item for item in value)
    return str(base / value) if value else value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)
