"""`otphsm sim pcscd`, `otphsm sim card insert` and `otphsm card info`.

The first two run simulated hardware in the foreground (a private pcscd; a card file
connected to its vpcd reader); `card info` is the station side a technician runs: which
reader, waiting for a card, what the card says, and optionally a PIN check with tries left.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from otphsm.cli.commands import CommandTree
from otphsm.core.cns_identity import MalformedCommonName, parse_common_name
from otphsm.core.errors import InvalidInput
from otphsm.simulators.card.cardfile import load_card, save_card
from otphsm.simulators.card.pcscd import PrivatePcscd
from otphsm.simulators.card.vpcd import DEFAULT_VPCD_PORT, VpcdLink
from otphsm.smartcard.cns import CnsClient
from otphsm.smartcard.cns_files import PersonalData, card_date
from otphsm.smartcard.errors import NoReader, PinBlocked, WrongPin
from otphsm.smartcard.pcsc import PcscContext

_POLL = 0.2
INSERT_WAIT = 5.0
"""`sim card insert`: seconds for vpcd to accept the card before the command gives up (once
in, a pcscd restart is waited for without limit)."""
_NAME_LABELS = {
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.SERIAL_NUMBER: "serialNumber",
}


VPCD_PORT_ENV = "OTPHSM_VPCD_PORT"


def _vpcd_port() -> int:
    """The default vpcd port: $OTPHSM_VPCD_PORT moves a private pcscd and the cards inserted
    into it together (a second setup on one host)."""
    text = os.environ.get(VPCD_PORT_ENV, "")
    return int(text) if text.isdigit() else DEFAULT_VPCD_PORT


def register(tree: CommandTree) -> None:
    tree.group("card", help="the citizen's smart card in the station's reader: read, unblock")
    tree.group("sim", help="simulated devices: HSM, card reader and card, tokens")
    parser = tree.command(
        "sim", "pcscd", handler=_sim_pcscd, help="run a private pcscd with a vpcd reader pair"
    )
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temp dir)")
    parser.add_argument(
        "--port",
        type=int,
        default=_vpcd_port(),
        help="first vpcd port; the second reader uses port+1 (default "
        f"${VPCD_PORT_ENV}, else {DEFAULT_VPCD_PORT})",
    )
    parser.add_argument("--debug", action="store_true", help="pcscd --debug --apdu into its log")

    tree.group("sim", "card", help="simulated CNS/CPS cards")
    parser = tree.command(
        "sim",
        "card",
        "insert",
        handler=_sim_card_insert,
        help="connect a card file to a running vpcd reader until Ctrl-C",
    )
    parser.add_argument("cardfile", type=Path, metavar="CARDFILE")
    parser.add_argument(
        "--port",
        type=int,
        default=_vpcd_port(),
        help=f"vpcd port (default ${VPCD_PORT_ENV}, else {DEFAULT_VPCD_PORT})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="vpcd host (default 127.0.0.1)")
    parser.add_argument(
        "--persist",
        action="store_true",
        help="write PIN changes and retry counters back to CARDFILE on removal",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=INSERT_WAIT,
        metavar="SECONDS",
        help=f"how long vpcd may take to accept the card at first (default {INSERT_WAIT:g})",
    )

    parser = tree.command("card", "info", handler=_card_info, help="show what the card says")
    parser.add_argument("--reader", help="use the first reader whose name contains this")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for a card (default 30)"
    )
    parser.add_argument(
        "--pin", help="verify this PIN and show the tries left; '-' asks for it without echo"
    )
    parser = tree.command(
        "card",
        "unblock",
        handler=_card_unblock,
        help="unblock the card's PIN with the PUK and choose a new PIN",
    )
    parser.add_argument("--reader", help="use the first reader whose name contains this")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for a card (default 30)"
    )
    parser.add_argument(
        "--pin-from-stdin",
        action="store_true",
        help="read the PUK, then the new PIN, from stdin, one per line, without prompting",
    )


# -- otphsm sim pcscd ----------------------------------------------------------------------


def _interrupt_on_sigterm() -> None:
    """Let SIGTERM unwind like Ctrl-C, so the pcscd child is stopped and the card removed."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _sim_pcscd(args: argparse.Namespace) -> int:
    _interrupt_on_sigterm()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="otphsm-pcscd-"))
    pcscd = PrivatePcscd(directory, args.port, debug=args.debug)
    with pcscd:
        env = " ".join(f"{key}={value}" for key, value in pcscd.env.items())
        print(f"private pcscd running (pid {pcscd.pid}), log {pcscd.log_path}")
        for name, port in zip(pcscd.reader_names, pcscd.ports, strict=True):
            print(f"  reader {name!r}: otphsm sim card insert CARDFILE --port {port}")
        print("PC/SC clients must use this socket (set before they start):")
        print(f"  export {env}")
        print("Ctrl-C to stop.", flush=True)
        while pcscd.running:
            time.sleep(_POLL)
        print(f"pcscd exited; see {pcscd.log_path}")
        return 1


# -- otphsm sim card insert ----------------------------------------------------------------


def _sim_card_insert(args: argparse.Namespace) -> int:
    _interrupt_on_sigterm()
    if args.wait < 0:
        raise InvalidInput("--wait must not be negative")
    card = load_card(args.cardfile)
    link = VpcdLink(card, args.port, args.host)
    print(f"inserting {args.cardfile} into vpcd at {args.host}:{args.port} (Ctrl-C removes it)")
    try:
        link.insert(wait=args.wait)
    except TimeoutError:
        raise NoReader(
            f"no vpcd reader accepted the card within {args.wait:g}s: is `otphsm sim pcscd` "
            "running, and is --port one of the ports it printed?"
        ) from None
    was_connected = False
    try:
        while link.running:
            if link.connected != was_connected:
                was_connected = link.connected
                state = "in the reader" if was_connected else "waiting for vpcd (is pcscd up?)"
                print(f"  card {state}", flush=True)
            time.sleep(_POLL)
    except KeyboardInterrupt:
        print("  removing the card")
    finally:
        link.remove()
        if args.persist:
            save_card(args.cardfile, card.export_spec())
            print(f"  state saved to {args.cardfile}")
    return 0


# -- otphsm card info ----------------------------------------------------------------------


def _date(text: str) -> str:
    try:
        day = card_date(text)
    except ValueError:
        return f"{text} (not a date)"
    return day.strftime("%d/%m/%Y") if day else "-"


def _print_personal_data(pd: PersonalData) -> None:
    rows = (
        ("Name", f"{pd.given_name} {pd.surname}"),
        ("Codice fiscale", pd.codice_fiscale or "-"),
        ("Sex", pd.sex or "-"),
        ("Born", f"{_date(pd.birth_date)} in {pd.birth_municipality or pd.birth_state or '-'}"),
        ("Resident in", pd.residence_municipality or "-"),
        ("Card issued", f"{_date(pd.issue_date)} by {pd.issuer_code or '-'}"),
        ("Card expires", _date(pd.expiry_date)),
    )
    for label, value in rows:
        print(f"  {label + ':':<16}{value}")


def _print_certificate(der: bytes, card_id: str, pd: PersonalData) -> None:
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    bits = f"RSA-{key.key_size}" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__
    print("Authentication certificate:")
    print(f"  {'Subject:':<16}{cert.subject.rfc4514_string(_NAME_LABELS)}")
    print(f"  {'Issuer:':<16}{cert.issuer.rfc4514_string(_NAME_LABELS)}")
    print(f"  {'Serial:':<16}{cert.serial_number:X}")
    print(
        f"  {'Valid:':<16}{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )
    print(f"  {'Key:':<16}{bits}")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    try:
        parsed = parse_common_name(common_name)
    except MalformedCommonName as exc:
        print(f"  WARNING: the common name is not a CNS one: {exc}")
        return
    if parsed.card_id != card_id:
        print(f"  WARNING: the certificate names card {parsed.card_id}, the card is {card_id}")
    if pd.codice_fiscale and parsed.codice_fiscale != pd.codice_fiscale:
        print("  WARNING: the codice fiscale differs between certificate and personal data")


def _ask_pin(value: str | None) -> str | None:
    if value != "-":
        return value
    return getpass.getpass("Card PIN: ")


def _card_info(args: argparse.Namespace) -> int:
    if args.timeout < 0:
        raise InvalidInput("--timeout must not be negative")
    pin = _ask_pin(args.pin)
    with PcscContext() as ctx:
        readers = ctx.readers()
        print(f"Readers: {', '.join(readers) if readers else '(none yet)'}")
        reader = ctx.find_reader(args.reader) if readers else None
        if reader is None or not ctx.card_present(reader):
            where = f"in {reader}" if reader else "(no reader yet)"
            print(f"Waiting for a card {where}, up to {args.timeout:g}s…", flush=True)
        reader = ctx.wait_for_card(args.reader, args.timeout)
        with ctx.connect(reader) as connection:
            print(f"Card in {reader}")
            print(f"  {'ATR:':<16}{connection.atr.hex(' ').upper()}")
            client = CnsClient(connection)
            contents = client.read_card()
            print(f"  {'Card id:':<16}{contents.card_id}")
            _print_personal_data(contents.personal_data)
            _print_certificate(contents.certificate, contents.card_id, contents.personal_data)
            if pin is None:
                return 0
            return _check_pin(client, pin)


def _check_pin(client: CnsClient, pin: str) -> int:
    try:
        client.verify_pin(pin)
    except WrongPin as exc:
        print(f"PIN: WRONG, {exc.tries_left} {'try' if exc.tries_left == 1 else 'tries'} left")
        return 1
    except PinBlocked:
        print("PIN: BLOCKED; unblock it with the PUK: otphsm card unblock")
        return 1
    print("PIN: correct (the retry counter is back to its maximum)")
    return 0


# -- otphsm card unblock -------------------------------------------------------------------


def _card_unblock(args: argparse.Namespace) -> int:
    """RESET RETRY COUNTER: the PUK, then a new PIN (asked twice at a terminal). A wrong PUK
    is the card's error (exit 3) with the PUK's tries left."""
    from otphsm.cli.ui import Prompter
    from otphsm.smartcard.cns import check_pin

    if args.timeout < 0:
        raise InvalidInput("--timeout must not be negative")
    prompter = Prompter(from_stdin=args.pin_from_stdin)
    puk = prompter.secret("Card PUK: ", "PUK")
    new_pin = prompter.new_secret("New card PIN (5 to 8 digits): ", "new PIN", check_pin)
    with PcscContext() as ctx:
        reader = ctx.wait_for_card(args.reader, args.timeout)
        with ctx.connect(reader) as connection:
            client = CnsClient(connection)
            card_id = client.read_card_id()
            client.unblock_pin(puk, new_pin)
    print(f"Card {card_id} in {reader}: PIN unblocked and changed (its tries are full again)")
    return 0
