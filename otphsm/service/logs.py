"""Structured logs: one JSON object (or key=value line) per record.

Nothing here is configured at import: `configure_logging` is called by `otphsm serve`. Records
carry the fields given in `extra={"fields": {...}}`; callers put RPC names, callers, status
codes, serials and codici fiscali there, never a seed, PIN, activation code, temporary
secret or SMS code.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import sys
import time
from typing import Any, TextIO


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"
    """key=value pairs, one record a line."""


class LogLevel(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"

    @classmethod
    def _missing_(cls, value: object) -> LogLevel | None:
        """Any case: "info" is INFO."""
        if isinstance(value, str):
            return cls.__members__.get(value.upper())
        return None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record.created)}",
            f"level={record.levelname}",
            f"logger={record.name}",
            f"msg={json.dumps(record.getMessage(), ensure_ascii=False)}",
        ]
        for key, value in _flat(getattr(record, "fields", {})):
            text = value if isinstance(value, int | float) else json.dumps(str(value))
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    level: LogLevel = LogLevel.INFO,
    fmt: LogFormat = LogFormat.JSON,
    stream: TextIO | None = None,
    *,
    process: int | None = None,
) -> None:
    """Send the root logger's records to `stream` (stderr) in `fmt`; `process`: one of several
    server processes writing to the same stream, named in a field of each record."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == LogFormat.JSON else KeyValueFormatter())
    if process is not None:
        handler.addFilter(_ProcessField(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class _ProcessField(logging.Filter):
    def __init__(self, process: int) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        record.fields = {"process": self.process, **getattr(record, "fields", {})}
        return True


def _flat(fields: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested fields as dotted keys: {"request": {"serial": …}} → request.serial=…"""
    flat: list[tuple[str, Any]] = []
    for key, value in fields.items():
        if isinstance(value, dict):
            flat += _flat(value, f"{prefix}{key}.")
        else:
            flat.append((prefix + key, value))
    return flat


def _timestamp(created: float) -> str:
    return f"{_second(int(created))}.{int(created % 1 * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    """The UTC date and time of one second, formatted once for the records of that second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
