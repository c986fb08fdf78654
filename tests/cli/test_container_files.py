"""The configuration files of deploy/ load with the one config loader, and the stop timings
agree: compose's stop_grace_period and Kubernetes' terminationGracePeriodSeconds (which
counts the preStop wait) are longer than the server's grace period. Running them is
tests/deploy's job (`make test-deploy`); these checks need no container."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from otphsm.config.client import load_client_section
from otphsm.service.config import ServiceConfig, load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def configmap_file(manifest: str, name: str) -> str:
    """The text of `name: |` in a ConfigMap's data (indented four spaces)."""
    block = re.search(rf"^  {re.escape(name)}: \|\n((?:    .*\n|\n)+)", manifest, re.M)
    assert block, name
    return textwrap.dedent(block.group(1))


def load_text(tmp_path: Path, name: str, text: str) -> ServiceConfig:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path, env={})


def seconds(pattern: str, text: str) -> list[float]:
    found = [float(value) for value in re.findall(pattern, text)]
    assert found, pattern
    return found


def test_compose_config_loads_and_its_stop_waits_longer_than_the_grace_period() -> None:
    config = load_config(DEPLOY / "config" / "server.toml", env={})
    health = load_client_section(DEPLOY / "config" / "health.toml", env={})
    assert health.server == f"localhost:{config.server.port}"
    assert health.ca == config.server.tls_client_ca
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "stop_signal: SIGTERM" in compose
    otphsm = compose.split("x-otphsm:")[1].split("services:")[0]
    (stop_grace_period,) = seconds(r"stop_grace_period: (\d+)s", otphsm)
    assert stop_grace_period > config.server.grace_seconds + 5  # the HSM logout, a margin
    assert config.store.url.startswith("postgresql://")


def test_kube_config_loads_and_the_pod_grace_period_covers_prestop_and_drain(
    tmp_path: Path,
) -> None:
    manifest = (DEPLOY / "kube" / "otphsm.yaml").read_text()
    config = load_text(tmp_path, "server.toml", configmap_file(manifest, "server.toml"))
    probes_client = tmp_path / "health.toml"
    probes_client.write_text(configmap_file(manifest, "health.toml"))
    health = load_client_section(probes_client, env={})
    assert health.server == f"localhost:{config.server.port}"
    assert f"containerPort: {config.server.port}" in manifest
    (termination,) = seconds(r"terminationGracePeriodSeconds: (\d+)", manifest)
    (pre_stop,) = seconds(r'command: \["sleep", "(\d+)"\]', manifest)
    assert termination > pre_stop + config.server.grace_seconds + 5
    assert "replicas: 2" in manifest
