"""The API-only distribution (api/: `otphsm-api`) built from this repository and installed alone
in a throwaway virtual environment, once per test session: its python, for tests that run a
caller's code with nothing but the API package and its four dependencies."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def api_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding the otphsm-api wheel and its dependencies only."""
    root = tmp_path_factory.mktemp("api-package")
    wheels = root / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", wheels, "api/")  # fmt: skip
    (wheel,) = wheels.glob("otphsm_api-*.whl")
    env = root / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    return python
