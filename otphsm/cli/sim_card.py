"""`otphsm sim card issue`: a simulated CNS card for a given person, into a card file."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from otphsm.cli.commands import CommandTree
from otphsm.core import codice_fiscale
from otphsm.core.errors import InvalidInput
from otphsm.simulators.card.cardfile import save_card
from otphsm.simulators.card.factory import ATR_BY_KEY_SIZE, Person, issue_card
from otphsm.simulators.card.pki import CertProfile, TestCa, make_test_ca
from otphsm.simulators.card.spec import check_pin_format

DEFAULT_MUNICIPALITY = "L378"


def register(tree: CommandTree) -> None:
    tree.group("sim", help="simulated devices: HSM, card reader and card, tokens")
    tree.group("sim", "card", help="simulated CNS/CPS cards")
    parser = tree.command(
        "sim",
        "ca",
        handler=_ca,
        help="the test card CA (made if DIR is empty) and a current CRL: the files for the "
        "server's card.trusted_ca and card.crls; run again to renew the CRL",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the CA's directory")
    parser = tree.command(
        "sim", "card", "issue", handler=_issue, help="issue a simulated CNS card into a card file"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="CARDFILE")
    parser.add_argument(
        "--ca-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="test CA directory; a new 'CA Cittadini (TEST)' is created there if it is empty",
    )
    parser.add_argument("--given-name", required=True)
    parser.add_argument("--surname", required=True)
    parser.add_argument(
        "--birth-date", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD"
    )
    parser.add_argument("--sex", required=True, choices=("M", "F"))
    parser.add_argument(
        "--codice-fiscale", help="default: computed from name, birth date, sex and birthplace"
    )
    parser.add_argument(
        "--birth-municipality",
        default=DEFAULT_MUNICIPALITY,
        metavar="BELFIORE",
        help=f"cadastral code of the birthplace (default {DEFAULT_MUNICIPALITY}, Trento)",
    )
    parser.add_argument("--residence-municipality", metavar="BELFIORE")
    parser.add_argument("--pin", required=True, help="5 to 8 digits")
    parser.add_argument("--puk", required=True, help="5 to 8 digits")
    parser.add_argument(
        "--key-size",
        type=int,
        choices=sorted(ATR_BY_KEY_SIZE),
        default=2048,
        help="1024: CNS 1.0 ATR, short APDUs; 2048: CNS 1.1 ATR, extended APDUs (default)",
    )
    parser.add_argument("--card-id", help="16 digits for EF_IDCarta (default: random)")
    parser.add_argument(
        "--crl-url",
        metavar="URL",
        help="an http:// CRL distribution point for the certificate (default: none), for a "
        "server with card.crl_fetch = true",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing card file")


def _load_or_create_ca(directory: Path, now: dt.datetime) -> tuple[TestCa, bool]:
    if directory.is_dir() and any(directory.iterdir()):
        return TestCa.load(directory), False
    ca = make_test_ca(now=now)
    ca.save(directory)
    return ca, True


def _ca(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    try:
        ca, created = _load_or_create_ca(args.dir, now)
        # here, not at the top: the deployment harness reads the server's config (python-pkcs11),
        # which a station's install (`otphsm[station]`) does not have
        from otphsm.simulators.deployment.parts import write_card_trust

        trust = write_card_trust(ca, args.dir, now)
        ca.save(args.dir)  # the next CRL number
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"cannot write the test CA: {exc}") from exc
    print(f"{'created' if created else 'kept'} test CA {ca.name.rfc4514_string()} in {args.dir}")
    print(f"  CA certificate (card.trusted_ca): {trust.ca}")
    next_update = now + ca.crl_lifetime
    print(f"  CRL (card.crls):                  {trust.crl}")
    print(f"  its next update:                  {next_update:%Y-%m-%d %H:%M} UTC")
    return 0


def _person(args: argparse.Namespace) -> Person:
    code = args.codice_fiscale or codice_fiscale.compute(
        args.surname,
        args.given_name,
        args.birth_date,
        codice_fiscale.Sex(args.sex),
        args.birth_municipality,
    )
    return Person(
        given_name=args.given_name,
        surname=args.surname,
        birth_date=args.birth_date,
        sex=args.sex,
        codice_fiscale=code,
        birth_municipality=args.birth_municipality,
        residence_municipality=args.residence_municipality or args.birth_municipality,
    )


def _issue(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and not args.force:
        raise InvalidInput(f"{out} exists; pass --force to overwrite it")
    if args.crl_url and not args.crl_url.startswith("http://"):
        raise InvalidInput("--crl-url must be an http:// URL")
    now = dt.datetime.now(dt.UTC)
    try:
        check_pin_format(args.pin)
        check_pin_format(args.puk, "PUK")
        person = _person(args)
        ca, created = _load_or_create_ca(args.ca_dir, now)
        spec = issue_card(
            ca,
            person,
            args.pin,
            args.puk,
            key_size=args.key_size,
            card_id=args.card_id,
            now=now,
            profile=CertProfile(crl_distribution_point=args.crl_url) if args.crl_url else None,
        )
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"cannot issue the card: {exc}") from exc
    save_card(out, spec)
    if created:
        print(f"created test CA in {args.ca_dir}")
    certificate = TestCa.certificate_file(args.ca_dir)
    print(f"  CA certificate {certificate}; its CRL: otphsm sim ca {args.ca_dir}")
    print(f"issued card {spec.extra['card_id']} for {spec.label} ({person.codice_fiscale})")
    print(f"  RSA-{spec.key_size}, ATR {spec.atr.hex(' ').upper()}")
    serial = spec.extra["certificate_serial"]
    print(f"  certificate serial {serial}, issuer {ca.name.rfc4514_string()}")
    print(f"  card file {out}")
    return 0
