"""The README's radclient example, run as written against a real `otphsm serve` with RADIUS:
only the port, the code and the secret file's place are this test's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support.fault_support import CITIZEN
from support.radius_support import StartRadius

pytestmark = [pytest.mark.softhsm, pytest.mark.timeout(120)]

README = Path(__file__).parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- radius-example .*?-->\n```sh\n(.*?)```", text, re.DOTALL)
    assert found, "the README's RADIUS example is missing"
    return found.group(1)


def test_the_readme_radclient_example_is_accepted(
    start_radius: StartRadius, tmp_path: Path
) -> None:
    deployment = start_radius(tokens=1)
    (fob,) = deployment.tokens
    example = readme_example()
    assert CITIZEN in example and "123456" in example and "127.0.0.1:1812" in example
    (tmp_path / "vpn.secret").write_bytes((tmp_path / "nas.secret").read_bytes())
    script = example.replace("123456", fob.code(0)).replace(
        "127.0.0.1:1812", f"127.0.0.1:{deployment.port}"
    )
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Received Access-Accept" in run.stdout
    assert 'Reply-Message = "Access granted."' in run.stdout
