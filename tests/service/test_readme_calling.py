"""README "Calling otphsm": its Python example (in this environment, and in a venv holding only
the API-only package) and its curl example, run as written (only the ports, the token's serial
and the code replaced) against a real `otphsm serve`, answer what the README says they answer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.http_fixtures import HttpDeployment

pytestmark = pytest.mark.softhsm

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_SERIAL = "MOB-0123456789"
EXAMPLE_CODE = "123456"


def readme_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Calling otphsm\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```$", section, re.M | re.S)
    return [textwrap.dedent(body) for _, body in blocks]


def as_run_here(block: str, deployment: HttpDeployment, code: str) -> str:
    return (
        block.replace("localhost:50051", f"localhost:{deployment.server.port}")
        .replace("localhost:8443", f"localhost:{deployment.server.http_port}")
        .replace(EXAMPLE_SERIAL, deployment.phone.serial)
        .replace(EXAMPLE_CODE, code)
    )


def run_in_pki_parent(argv: list[str], deployment: HttpDeployment, cwd: Path) -> str:
    cwd.mkdir(exist_ok=True)
    (cwd / "pki").symlink_to(deployment.pki.directory)
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_python_example_verifies_a_code(
    http_deployment: HttpDeployment, tmp_path: Path
) -> None:
    (block,) = readme_blocks("python")
    script = as_run_here(block, http_deployment, http_deployment.phone.counter_code(1))
    out = run_in_pki_parent([sys.executable, "-c", script], http_deployment, tmp_path)
    assert out.split() == ["OK", "0"]
    again = run_in_pki_parent([sys.executable, "-c", script], http_deployment, tmp_path / "again")
    assert again.split() == ["REPLAYED", "0"]


def test_the_curl_example_answers_what_the_readme_shows(
    http_deployment: HttpDeployment, tmp_path: Path
) -> None:
    (block,) = readme_blocks("sh")
    script = as_run_here(block, http_deployment, http_deployment.phone.counter_code(1))
    shown = [line[2:] for line in script.splitlines() if line.startswith("# {")]
    out = run_in_pki_parent(["bash", "-euo", "pipefail", "-c", script], http_deployment, tmp_path)
    assert json.loads(out) == json.loads(shown[0])
