"""Checks for the devices and tools a test tier needs; each skips with a reason when absent."""

from __future__ import annotations

import os
import shutil

import pytest

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; run `make setup` as root)")
    return path


def require_softhsm() -> str:
    require_tool("softhsm2-util", "softhsm2")
    if not os.path.exists(SOFTHSM_MODULE):
        pytest.skip(f"{SOFTHSM_MODULE} is missing (Debian package softhsm2)")
    return SOFTHSM_MODULE
