"""`otphsm serve`, `otphsm admin dev-pki` and `otphsm audit verify`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from otphsm.cli.commands import CommandTree

if TYPE_CHECKING:
    from otphsm.core.audit import AuditHead


def register(tree: CommandTree) -> None:
    parser = tree.command(
        "serve", handler=_serve, help="run the gRPC service (SIGTERM/SIGINT: graceful stop)"
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")

    tree.group("admin", help="operator tasks")
    parser = tree.command(
        "admin",
        "dev-pki",
        handler=_dev_pki,
        help="write a development CA, a localhost server certificate and one client "
        "certificate per role (PEM)",
    )
    parser.add_argument("dir", type=Path, help="directory for the PEM files")
    parser = tree.command(
        "admin",
        "init-config",
        handler=_init_config,
        help="write a server config and client configs (station, phone, verifier) for the "
        "development setup: every key, commented, with its default",
    )
    parser.add_argument(
        "dir", type=Path, nargs="?", default=Path("."), help="where (default: here)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    parser = tree.command(
        "admin",
        "hsm-init",
        handler=_hsm_init,
        help="provision the HSM token of a configuration: the trusted KEK (as Security "
        "Officer) and the pepper MAC key; keeps keys that exist",
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    parser.add_argument(
        "--so-pin-from-stdin",
        action="store_true",
        help="read the SO PIN from stdin (default: $OTPHSM_HSM_SO_PIN, else asked without echo)",
    )

    tree.group("audit", help="the audit chain")
    parser = tree.command(
        "audit",
        "verify",
        handler=_audit_verify,
        help="check every link and HSM MAC of the chain; print its head (seq and entry hash)",
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    parser.add_argument(
        "--expect-head",
        type=_audit_head,
        metavar="SEQ:HEX",
        help="a head printed by an earlier run: fail unless that entry is still there with "
        "that hash (catches entries removed from the end, which the chain alone cannot)",
    )


# The service's modules (grpc, the servicers, fpdf, …) load only when a command needs them,
# so `otphsm --help` and the station and token commands start fast.


def _serve(args: argparse.Namespace) -> int:
    from otphsm.service.server import serve
    from otphsm.service.workers import Worker
    from otphsm.simulators.crash import crash_hook_from_env

    hook = crash_hook_from_env(os.environ)
    return serve(args.config, write_point_hook=hook, worker=Worker.from_env(os.environ))


def _dev_pki(args: argparse.Namespace) -> int:
    from otphsm.service.devpki import write_dev_pki

    pki = write_dev_pki(args.dir)
    print(f"development PKI in {pki.directory} (NOT FOR PRODUCTION)")
    print(f"  CA:      {pki.ca}")
    print(f"  server:  {pki.server_cert} + {pki.server_key.name} (localhost, 127.0.0.1, ::1)")
    for role, (cert, key) in pki.clients.items():
        print(f"  {role.value + ':':10}{cert} + {key.name} (urn:otphsm:role:{role.value})")
    return 0


def _init_config(args: argparse.Namespace) -> int:
    from otphsm.core.errors import InvalidInput
    from otphsm.service.samples import samples

    directory: Path = args.dir
    found = samples()
    existing = [
        str(directory / sample.name) for sample in found if (directory / sample.name).exists()
    ]
    if existing and not args.force:
        raise InvalidInput(f"{', '.join(existing)} exist(s); pass --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    for sample in found:
        (directory / sample.name).write_text(sample.text, encoding="utf-8")
        print(f"wrote {directory / sample.name}")
    print(
        "they expect beside them: hsm/ (otphsm sim hsm init hsm), pki/ (otphsm admin dev-pki "
        "pki), card-ca/ (otphsm sim ca card-ca); the database otphsm.db is made by serve"
    )
    return 0


def _hsm_init(args: argparse.Namespace) -> int:
    import getpass
    import os
    import sys

    from otphsm.hsm import open_vault
    from otphsm.hsm.provision import provision
    from otphsm.hsm.session import HsmSessionOwner
    from otphsm.service.assembly import hsm_config
    from otphsm.service.config import load_config

    config = hsm_config(load_config(args.config).hsm)
    if args.so_pin_from_stdin:
        so_pin = sys.stdin.readline().rstrip("\n")
    else:
        so_pin = os.environ.get("OTPHSM_HSM_SO_PIN") or getpass.getpass(
            "HSM Security Officer PIN: "
        )
    with HsmSessionOwner(config) as owner:
        report = provision(owner, so_pin)
    kek = "created" if report.kek_created else "kept"
    pepper = "created" if report.pepper_created else "kept"
    print(
        f"token {config.token_label!r}: KEK {config.kek_label!r} {kek}, "
        f"pepper key {config.pepper_label!r} {pepper}"
    )
    open_vault(config).close()  # the same checks as at start-up
    print("checked: the keys are usable and a stored seed unwraps only into a sign-only key")
    return 0


def _audit_head(text: str) -> AuditHead:
    from otphsm.core.audit import AuditHead

    try:
        return AuditHead.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _audit_verify(args: argparse.Namespace) -> int:
    from otphsm.core.app.audit import verify_audit
    from otphsm.core.audit import AuditProblem
    from otphsm.service.assembly import assemble
    from otphsm.service.config import load_config

    assembly = assemble(load_config(args.config))
    try:
        report = verify_audit(assembly.app, args.expect_head)
    finally:
        assembly.close()
    end = f"seq {report.head.seq}" if report.head is not None else "no entry"
    if report.intact:
        print(f"OK: {report.entries} entries, chain intact")
        if args.expect_head is not None:
            print(f"recorded head seq {args.expect_head.seq} present, hash matches")
        if report.head is not None:
            print(f"head: seq {report.head.seq} sha256 {report.head.entry_hash.hex()}")
        return 0
    for finding in report.findings:
        if finding.problem is AuditProblem.TRUNCATED:
            print(
                f"entry {finding.seq}: truncated: the recorded head is missing (the chain ends "
                f"at {end}): entries were removed from the end"
            )
        elif finding.problem is AuditProblem.HEAD_MISMATCH:
            print(
                f"entry {finding.seq}: head_mismatch: its hash does not match the recorded "
                "head: the chain was rewritten at or before it"
            )
        else:
            print(f"entry {finding.seq}: {finding.problem.value}")
    print(f"BROKEN: {len(report.findings)} finding(s) in {report.entries} entries (last: {end})")
    return 1
