"""The generic configuration loader, through the client's `[client]` section, and the bounds
declared beside fields."""

from __future__ import annotations

import enum
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest

from otphsm.config.client import DEFAULT_TIMEOUT_SECONDS, ClientSection, load_client_section
from otphsm.config.loader import FilePaths, sections_from_mapping
from otphsm.core.app.context import AppPolicy
from otphsm.core.bounds import above, at_least, between, bounds_of
from otphsm.core.errors import ConfigurationError

CLIENT = """
[client]
server = "otp.example.org:443"
ca = "pki/ca.pem"
cert = "/etc/otphsm/station.pem"
key = "pki/station-key.pem"
timeout_seconds = 4

[station]
not_ours = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(text)
    return path


def test_a_client_file_loads_through_the_generic_loader(tmp_path: Path) -> None:
    section = load_client_section(write(tmp_path, CLIENT), {})
    assert section == ClientSection(
        server="otp.example.org:443",
        ca=str(tmp_path / "pki/ca.pem"),
        cert="/etc/otphsm/station.pem",
        key=str(tmp_path / "pki/station-key.pem"),
        timeout_seconds=4.0,
    )


def test_client_keys_left_out_are_not_given_and_env_may_override(tmp_path: Path) -> None:
    path = write(tmp_path, '[client]\nserver = "h:1"\n')
    section = load_client_section(path, {"OTPHSM_CLIENT_TIMEOUT_SECONDS": "2.5"})
    assert (section.server, section.ca, section.cert, section.key) == ("h:1", "", "", "")
    assert section.timeout_seconds == 2.5
    assert load_client_section(path, {}).timeout_seconds == DEFAULT_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[client]\nserver = "h:1"\npassword = "x"\n', "unknown key(s) ['password'] in [client]"),
        ("[client]\ntimeout_seconds = 0\n", "client.timeout_seconds must be > 0"),
        ('[client]\ntimeout_seconds = "5"\n', "client.timeout_seconds must be a number"),
        ("[client]\nserver = 443\n", "client.server must be a string"),
        ('[station]\nserver = "h:1"\n', "has no [client] table"),
        ("[client\n", "not valid TOML"),
    ],
)
def test_bad_client_files_are_refused_clearly(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_client_section(write(tmp_path, text), {})
    assert says in str(refused.value)


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True)
class Sample:
    colour: Colour = Colour.RED
    count: Annotated[int, between(0, 3)] = 1
    files: FilePaths = ("a.pem",)


def test_choices_bounds_and_paths_of_any_section(tmp_path: Path) -> None:
    sections = {"sample": Sample}
    built = sections_from_mapping(
        {"sample": {"colour": "green"}}, sections, base=tmp_path, env={"OTPHSM_SAMPLE_COUNT": "3"}
    )
    assert built["sample"] == Sample(Colour.GREEN, 3, (str(tmp_path / "a.pem"),))
    assert built["sample"].colour is Colour.GREEN
    for raw, env, says in [
        ({"sample": {"colour": "blue"}}, {}, "sample.colour must be one of ['red', 'green']"),
        ({}, {"OTPHSM_SAMPLE_COLOUR": "blue"}, "OTPHSM_SAMPLE_COLOUR must be one of"),
        ({"sample": {"count": 4}}, {}, "sample.count must be 0..3"),
        ({}, {"OTPHSM_SAMPLE_COUNT": "-1"}, "sample.count must be 0..3"),
        ({"other": {}}, {}, "unknown section(s) ['other']; known: ['sample']"),
        ({"sample": 1}, {}, "[sample] must be a table"),
    ]:
        with pytest.raises(ConfigurationError) as refused:
            sections_from_mapping(raw, sections, base=tmp_path, env=env)
        assert says in str(refused.value)


def test_bounds_read_as_the_messages_say() -> None:
    assert [str(b) for b in (between(0, 65535), at_least(1), above(0))] == [
        "0..65535",
        ">= 1",
        "> 0",
    ]
    assert not above(0).admits(0) and above(0).admits(0.1)
    assert at_least(1).admits(1) and not at_least(1).admits(0)
    assert between(10, 100).admits(100) and not between(10, 100).admits(101)
    assert str(bounds_of(AppPolicy)["grid_cells"]) == "10..100"


def test_a_core_policy_holds_its_bounds_however_it_is_built() -> None:
    with pytest.raises(ValueError, match=r"grid_cells must be 10\.\.100, got 5"):
        AppPolicy(grid_cells=5)
    with pytest.raises(ValueError, match="challenge_seconds must be >= 1, got 0"):
        AppPolicy(challenge_seconds=0)


BLOCKED_IMPORTS = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("grpc", "pkcs11", "smartcard", "google"):
            raise ImportError(name)

sys.meta_path.insert(0, Refuse())
import otphsm.config.client
"""


def test_a_client_only_install_can_import_the_loader() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORTS], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
