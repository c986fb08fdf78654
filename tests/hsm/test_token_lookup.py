"""Finding the token by its label while another process logs in to it: SoftHSM2 rewrites a
token's file at every C_Login (truncating it first), and a lookup that reads it meanwhile saw no
token of that label, or CKR_GENERAL_ERROR (once in ~1,500 lookups here), which stopped an
`otphsm serve` starting beside another one. The lookup is tried again instead.

Both loops run in processes of their own on a clone of the run's SoftHSM (`serve_softhsm`), and
the login loop stops between two logins: a process killed in the middle of that rewrite would
leave the token unreadable, for the clone alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.softhsm

LOOKUPS = 20_000
LOGIN_LOOP = """
import signal, sys, pkcs11
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[3])
print("ready", flush=True)
while not stopping:
    with token.open(user_pin=sys.argv[2]):
        pass
"""
LOOKUP_LOOP = """
import sys
from otphsm.hsm.backend import ModuleSessionSource
source = ModuleSessionSource.for_module(sys.argv[1])
for _ in range(int(sys.argv[3])):
    assert source.find_token(sys.argv[2]).label == sys.argv[2]
"""


def test_the_token_is_found_while_another_process_logs_in_to_it(serve_softhsm) -> None:  # type: ignore[no-untyped-def]
    hsm = serve_softhsm
    env = {**os.environ, **hsm.settings()}
    login_argv = [sys.executable, "-c", LOGIN_LOOP, hsm.module, hsm.user_pin, hsm.token_label]
    logins = subprocess.Popen(login_argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert logins.stdout is not None and logins.stdout.readline().strip() == "ready"
        lookups = subprocess.run(
            [sys.executable, "-c", LOOKUP_LOOP, hsm.module, hsm.token_label, str(LOOKUPS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert lookups.returncode == 0, lookups.stderr[-3000:]
        assert logins.poll() is None, "the login loop must have run throughout"
    finally:
        logins.terminate()  # ends the loop between two logins
        try:
            logins.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logins.kill()
            logins.wait()
