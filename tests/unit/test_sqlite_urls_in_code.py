"""`sqlite:///x` is relative (to the config file's directory) since SQLite URLs are read as
SQLAlchemy reads them: code that glues `sqlite://` to an absolute path makes a relative one.
Every URL built from a path goes through `otphsm.store.urls.sqlite_url`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GLUED = re.compile(r"""f["']sqlite://\{""")


def test_no_sqlite_url_is_glued_to_a_path() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("otphsm", "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if GLUED.search(line)
    ]
    assert not found, f"use sqlite_url(path) instead: {found}"
