"""Log records carry their own time, in UTC to the millisecond, whatever the order in which
records of different seconds are formatted (the formatted second is reused, never stale)."""

from __future__ import annotations

import datetime as dt
import json
import logging

from otphsm.service.logs import JsonFormatter, KeyValueFormatter


def record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("otphsm.rpc", logging.INFO, __file__, 1, "rpc", None, None)
    record.created = created
    return record


def expected(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_each_record_shows_its_own_utc_time() -> None:
    times = [1_765_000_000.125, 1_765_000_000.75, 1_765_000_001.0, 1_765_000_000.5, 86_399.25]
    for created in times:
        assert json.loads(JsonFormatter().format(record_at(created)))["ts"] == expected(created)
        assert KeyValueFormatter().format(record_at(created)).startswith(f"ts={expected(created)} ")
