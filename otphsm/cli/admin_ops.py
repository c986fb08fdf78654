"""`otphsm admin token|grid|fob|audit …`: an operator's commands over AdminService (role
`admin`), each printing a table for people or, with `--json`, one JSON document for scripts.

    otphsm admin token list [--cf CF] [--state S] [--kind K] [--page-size N]
                            [--page-token T | --all]
    otphsm admin token show SERIAL
    otphsm admin token suspend|resume|unlock SERIAL [--reason TEXT]
    otphsm admin token revoke SERIAL --reason TEXT [--yes]
    otphsm admin grid revoke SERIAL --reason TEXT [--yes]
    otphsm admin fob list [--unassigned] [--state S] [--page-size N] [--page-token T | --all]
    otphsm admin audit export [--since SEQ|ISO-DATE] [--format jsonl] [--output FILE]
                              [--page-size N]

Nothing printed carries a seed, a PIN or a code: the service never sends them. Revoking is for
good, so it needs a reason (kept in the audit log) and a confirmation (`--yes` for scripts).
`audit export` reads every page and writes one JSON object per entry. Exit codes: see
`otphsm.cli.ui` (4: refused, e.g. a certificate without the admin role).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from otphsm.cli.commands import CommandTree, Handler
from otphsm.cli.connection import add_connection_arguments, connect
from otphsm.cli.ui import ExitCode, console
from otphsm.core.errors import InvalidInput
from otphsm.core.tokens import TokenKind, TokenState

if TYPE_CHECKING:
    from otphsm.client import Operator
    from otphsm.client.results import AuditRecord, GridCardView, Page, TokenView

STATES = [state.value for state in TokenState]
KINDS = [kind.value for kind in TokenKind]


def register(tree: CommandTree) -> None:
    tree.group("admin", help="operator tasks")
    tree.group("admin", "token", help="citizens' tokens: list, show, suspend, resume, revoke")
    listing = _command(tree, ("token", "list"), _token_list, "list tokens, oldest first")
    listing.add_argument("--cf", metavar="CF", help="only this citizen's (codice fiscale)")
    listing.add_argument("--kind", choices=KINDS)
    _add_paging(listing)
    show = _command(tree, ("token", "show"), _token_show, "one token's state and use")
    show.add_argument("serial", metavar="SERIAL")
    for name, text in (
        ("suspend", "suspend an active token (resume brings it back)"),
        ("resume", "make a suspended token active again"),
        ("unlock", "clear a token's failure count and lock"),
    ):
        change = _command(tree, ("token", name), _token_change, text)
        change.add_argument("serial", metavar="SERIAL")
        change.add_argument("--reason", default="", help="why (kept in the audit log)")
        change.set_defaults(operation=name)
    revoke = _command(tree, ("token", "revoke"), _token_change, "revoke a token for good")
    _add_revocation(revoke)
    revoke.set_defaults(operation="revoke")

    tree.group("admin", "grid", help="Security Cards (grid cards)")
    grid = _command(tree, ("grid", "revoke"), _grid_revoke, "revoke a Security Card for good")
    _add_revocation(grid)

    tree.group("admin", "fob", help="hardware key fobs")
    fobs = _command(tree, ("fob", "list"), _fob_list, "list key fobs, oldest first")
    fobs.add_argument("--unassigned", action="store_true", help="only the inventory")
    _add_paging(fobs)

    tree.group("admin", "audit", help="the service's audit log")
    export = _command(tree, ("audit", "export"), _audit_export, "write the audit log as JSON lines")
    export.add_argument(
        "--since",
        type=_since,
        metavar="SEQ|DATE",
        help="from this sequence number on, or from this ISO date or time (UTC unless it "
        "names a zone) on",
    )
    export.add_argument("--format", choices=["jsonl"], default="jsonl", help="one JSON per line")
    export.add_argument(
        "--page-size", type=int, default=0, metavar="N", help="entries per call (default 200)"
    )
    export.add_argument("--output", type=Path, metavar="FILE", help="default: stdout")


def _command(
    tree: CommandTree, path: tuple[str, str], handler: Handler, text: str
) -> argparse.ArgumentParser:
    parser = tree.command("admin", *path, handler=_as_admin(handler), help=text)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_connection_arguments(parser, "admin")
    return parser


def _as_admin(handler: Handler) -> Handler:
    """`handler`, whose refusal for want of a role says which role the command needs."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from otphsm.client import ServiceRefused

        try:
            return handler(args)
        except ServiceRefused as refused:
            if refused.code not in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
                raise
            raise ServiceRefused(
                f"{refused}: this command needs a client certificate with the admin role",
                code=refused.code,
                reason=refused.reason,
            ) from None

    return run


def _add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", choices=STATES)
    parser.add_argument("--page-size", type=int, default=0, metavar="N", help="default 50")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--page-token", default="", metavar="T", help="the next page of a listing")
    where.add_argument("--all", action="store_true", help="every page")


def _add_revocation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("serial", metavar="SERIAL")
    parser.add_argument(
        "--reason", required=True, help="why, kept in the audit log (e.g. 'lost', 'stolen')"
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for a confirmation")


# --- handlers ------------------------------------------------------------------------------


def _token_list(args: argparse.Namespace) -> int:
    filters = {
        "codice_fiscale": args.cf or "",
        "state": TokenState(args.state) if args.state else None,
        "kind": TokenKind(args.kind) if args.kind else None,
    }
    with connect(args) as client:
        page = _pages(_operator(client).list_tokens, args, filters)
    _print_tokens(args, page, "tokens", "No token matches.")
    return ExitCode.OK


def _fob_list(args: argparse.Namespace) -> int:
    filters = {
        "unassigned_only": args.unassigned,
        "state": TokenState(args.state) if args.state else None,
    }
    with connect(args) as client:
        page = _pages(_operator(client).list_fobs, args, filters)
    _print_tokens(args, page, "fobs", "No key fob matches (import some: otphsm admin import-pskc).")
    return ExitCode.OK


def _token_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        token = _operator(client).get_token(args.serial)
    if args.json:
        _print_json({"token": token_json(token)})
        return ExitCode.OK
    out = console()
    for name, value in token_json(token).items():
        shown = value
        if name == "params":
            shown = " ".join(str(v) for v in value.values())
        elif name.endswith("_at") or name == "locked_until":
            shown = _when(value)
        out.print(f"{name.replace('_', ' ').capitalize() + ':':18}{shown or '-'}")
    return ExitCode.OK


def _token_change(args: argparse.Namespace) -> int:
    operation: str = args.operation
    if operation == "revoke":
        _confirm(args, f"Revoke token {args.serial} for good? It never verifies again.")
    with connect(args) as client:
        token = _operator(client).change_state(operation, args.serial, args.reason)
    if args.json:
        _print_json({"token": token_json(token)})
    else:
        done = {"suspend": "suspended", "resume": "resumed", "unlock": "unlocked"}
        console().print(
            f"Token {token.serial} {done.get(operation, 'revoked')}: now {token.state}."
        )
    return ExitCode.OK


def _grid_revoke(args: argparse.Namespace) -> int:
    _confirm(args, f"Revoke Security Card {args.serial} for good?")
    with connect(args) as client:
        card = _operator(client).revoke_grid_card(args.serial, args.reason)
    if args.json:
        _print_json({"grid_card": grid_card_json(card)})
    else:
        console().print(f"Security Card {card.serial} revoked; issue a new one at a station.")
    return ExitCode.OK


def _audit_export(args: argparse.Namespace) -> int:
    from otphsm.client.operations import every_page

    from_seq, since = args.since or (0, 0)
    if args.page_size < 0:
        raise InvalidInput("--page-size is not negative")
    with connect(args) as client:
        entries = every_page(
            _operator(client).audit_entries,
            from_seq=from_seq,
            since=since,
            page_size=args.page_size,
        )
        if args.output is None:
            count = _write_entries(sys.stdout, entries)
        else:
            try:
                with args.output.open("w", encoding="utf-8") as out:
                    count = _write_entries(out, entries)
            except OSError as exc:
                raise InvalidInput(f"cannot write {args.output}: {exc.strerror}") from None
            print(f"{count} audit entries written to {args.output}", file=sys.stderr)
    return ExitCode.OK


# --- shared shapes -------------------------------------------------------------------------


def _operator(client: Any) -> Operator:
    from otphsm.client import Operator

    return Operator(client)


def _pages(fetch: Any, args: argparse.Namespace, filters: dict[str, Any]) -> Page[TokenView]:
    """One page (`--page-token`), or every page joined (`--all`)."""
    from otphsm.client.operations import every_page
    from otphsm.client.results import Page

    if args.page_size < 0:
        raise InvalidInput("--page-size is not negative")
    if args.all:
        items = every_page(fetch, page_size=args.page_size, **filters)
        return Page(tuple(items))
    page: Page[TokenView] = fetch(page_size=args.page_size, page_token=args.page_token, **filters)
    return page


def _write_entries(out: IO[str], entries: Iterator[AuditRecord]) -> int:
    count = 0
    for entry in entries:
        out.write(json.dumps(audit_json(entry), sort_keys=True, ensure_ascii=False) + "\n")
        count += 1
    out.flush()
    return count


def _confirm(args: argparse.Namespace, question: str) -> None:
    """A revocation: with a reason, and confirmed (asked, or `--yes`)."""
    if not args.reason.strip():
        raise InvalidInput("--reason is required: say why (e.g. 'lost', 'stolen')")
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput("revoking is for good: confirm with --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise InvalidInput("not confirmed: nothing revoked")


def _print_tokens(args: argparse.Namespace, page: Page[TokenView], key: str, none: str) -> None:
    if args.json:
        tokens = [token_json(token) for token in page.items]
        _print_json({key: tokens, "next_page_token": page.next_page_token})
        return
    out = console()
    if not page.items:
        out.print(none)
        return
    from rich.table import Table

    table = Table("Serial", "Codice fiscale", "Kind", "State", "Last used", "Fails", box=None)
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for token in page.items:
        state = token.state.value
        if token.locked_until:
            state += f" (locked until {_when(token.locked_until)})"
        table.add_row(
            token.serial,
            token.codice_fiscale or "(inventory)",
            token.kind.value,
            state,
            _when(token.last_used_at),
            str(token.failures),
        )
    out.print(table)
    if page.next_page_token:
        out.print(f"More: --page-token {page.next_page_token}  (or --all)")


def _when(unix: int) -> str:
    if not unix:
        return "-"
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))


def token_json(token: TokenView) -> dict[str, Any]:
    params = token.params
    return {
        "serial": token.serial,
        "codice_fiscale": token.codice_fiscale,
        "kind": token.kind.value,
        "state": token.state.value,
        "params": {
            "mode": params.mode.value,
            "algorithm": params.algorithm.value,
            "digits": params.digits,
            "period": params.period,
        },
        "created_at": token.created_at,
        "activated_at": token.activated_at,
        "last_used_at": token.last_used_at,
        "locked_until": token.locked_until,
        "failures": token.failures,
        "replaces_serial": token.replaces_serial,
    }


def grid_card_json(card: GridCardView) -> dict[str, Any]:
    return {
        "serial": card.serial,
        "codice_fiscale": card.codice_fiscale,
        "state": card.state,
        "cells": card.cells,
        "created_at": card.created_at,
        "revoked_at": card.revoked_at,
    }


def audit_json(entry: AuditRecord) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "time": _when(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
        "prev_hash": entry.prev_hash.hex(),
        "entry_hash": entry.entry_hash.hex(),
        "mac": entry.mac.hex(),
    }


def _since(text: str) -> tuple[int, int]:
    """`--since`: a sequence number (digits) or an ISO 8601 date or time, as (seq, time)."""
    text = text.strip()
    if text.isdigit():
        return int(text), 0
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "a sequence number or an ISO date or time (2026-12-01, 2026-12-01T09:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return 0, int(when.timestamp())
