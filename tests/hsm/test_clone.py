"""A clone of a SoftHSM2 installation taken while another process logs in to it (SoftHSM rewrites
token.object at each C_Login, truncating it first) still holds every token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from otphsm.simulators.hsm.softhsm import clone_softhsm, create_softhsm, existing_token_labels

pytestmark = pytest.mark.softhsm

LABELS = ("first", "second")
LOGIN_LOOP = """
import sys, pkcs11
lib = pkcs11.lib(sys.argv[1])
tokens = [lib.get_token(token_label=label) for label in sys.argv[3:]]
print("ready", flush=True)
while True:
    for token in tokens:
        with token.open(user_pin=sys.argv[2]):
            pass
"""


def test_a_clone_taken_during_logins_holds_every_token(tmp_path: Path) -> None:
    source = create_softhsm(tmp_path / "source", LABELS)
    env = {**os.environ, "SOFTHSM2_CONF": str(source.conf_path)}
    argv = [sys.executable, "-c", LOGIN_LOOP, source.module, source.user_pin, *LABELS]
    logins = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert logins.stdout is not None and logins.stdout.readline().strip() == "ready"
        for attempt in range(25):
            clone = clone_softhsm(source, tmp_path / f"clone-{attempt}")
            assert existing_token_labels(clone) == set(LABELS)
        assert logins.poll() is None, "the login loop must have run throughout"
    finally:
        logins.kill()
        logins.wait()
