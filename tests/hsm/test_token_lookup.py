"""Finding the token by its label while another process logs in to it: SoftHSM2 rewrites a
token's file at every C_Login (truncating it first), and a lookup that reads it meanwhile saw no
token of that label, or CKR_GENERAL_ERROR (once in ~1,500 lookups here), which stopped an
`otphsm serve` starting beside another one. The lookup is tried again instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from otphsm.hsm.backend import ModuleSessionSource

pytestmark = pytest.mark.softhsm

LOOKUPS = 20_000
LOGIN_LOOP = """
import sys, pkcs11
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[3])
print("ready", flush=True)
while True:
    with token.open(user_pin=sys.argv[2]):
        pass
"""


def test_the_token_is_found_while_another_process_logs_in_to_it(softhsm) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, **softhsm.settings()}
    argv = [sys.executable, "-c", LOGIN_LOOP, softhsm.module, softhsm.user_pin, softhsm.token_label]
    logins = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    source = ModuleSessionSource.for_module(softhsm.module)
    try:
        assert logins.stdout is not None and logins.stdout.readline().strip() == "ready"
        for _ in range(LOOKUPS):
            assert source.find_token(softhsm.token_label).label == softhsm.token_label
        assert logins.poll() is None, "the login loop must have run throughout"
    finally:
        logins.kill()
        logins.wait()
