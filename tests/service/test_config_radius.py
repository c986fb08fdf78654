"""The [radius] section of `otphsm serve`'s configuration: off by default; NAS clients as an
array of tables, each checked like a section (its keys, bounds and choices named on refusal),
paths relative to the file, the shared secret read from its file and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from otphsm.core.errors import ConfigurationError
from otphsm.service.config import OobChallenge, load_config

from .test_config import MINIMAL, write

SECRET = "nas-shared-secret-of-32-bytes-xx"
RADIUS = """
[radius]
enabled = true
port = 18120

[[radius.clients]]
name = "vpn"
addresses = ["192.0.2.1", "2001:db8::1"]
secret_file = "vpn.secret"
require_prefix = true
oob_challenge = "sms"

[[radius.clients]]
name = "wifi"
addresses = ["192.0.2.2"]
secret_file = "/etc/otphsm/wifi.secret"
burst = 5
"""


def test_radius_is_off_by_default(tmp_path: Path) -> None:
    assert not load_config(write(tmp_path, MINIMAL), {}).radius.enabled


def test_nas_clients_are_tables_with_their_own_keys(tmp_path: Path) -> None:
    (tmp_path / "vpn.secret").write_text(SECRET + "\n")
    radius = load_config(write(tmp_path, MINIMAL + RADIUS), {}).radius
    assert (radius.enabled, radius.port, radius.answer_cache_seconds) == (True, 18120, 30)
    vpn, wifi = radius.clients
    assert (vpn.name, vpn.addresses, vpn.require_prefix) == (
        "vpn",
        ("192.0.2.1", "2001:db8::1"),
        True,
    )
    assert vpn.oob_challenge is OobChallenge.SMS
    assert vpn.secret_file == str(tmp_path / "vpn.secret")
    assert vpn.secret() == SECRET.encode()
    assert SECRET not in repr(radius)
    assert (wifi.burst, wifi.failures_per_second, wifi.oob_challenge) == (5, 10.0, OobChallenge.OFF)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (('name = "wifi"', 'name = "vpn"'), "radius.clients: names must differ"),
        (('["192.0.2.2"]', '["192.0.2.1"]'), "an address belongs to one NAS only"),
        (('["192.0.2.2"]', '["nas.example"]'), "radius client wifi: addresses must be IP"),
        (("burst = 5", "burst = 0"), "radius.clients[1].burst must be >= 1"),
        (("burst = 5", "colour = 5"), "unknown key(s) ['colour'] in [radius.clients[1]]"),
        (('oob_challenge = "sms"', 'oob_challenge = "fax"'), "oob_challenge must be one of"),
        (("[[radius.clients]]", "[radius.nas]"), "unknown key(s) ['nas'] in [radius]"),
    ],
)
def test_bad_nas_declarations_are_refused_naming_the_key(
    tmp_path: Path, change: tuple[str, str], says: str
) -> None:
    old, new = change
    assert old in RADIUS
    with pytest.raises(ConfigurationError) as refused:
        load_config(write(tmp_path, MINIMAL + RADIUS.replace(old, new, 1)), {})
    assert says in str(refused.value)


def test_enabled_without_clients_or_with_a_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="declare at least one NAS"):
        load_config(write(tmp_path, MINIMAL + "[radius]\nenabled = true\n"), {})
    (tmp_path / "vpn.secret").write_text("short\n")
    vpn = load_config(write(tmp_path, MINIMAL + RADIUS), {}).radius.clients[0]
    with pytest.raises(ConfigurationError, match="at least 16 bytes") as refused:
        vpn.secret()
    assert "short" not in str(refused.value)
