"""The simulated card's file system and its answers to foreign or malformed commands."""

from __future__ import annotations

import pytest
from support.card_apdus import H, fci_tags, read_selected, sw, tx

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.apdu import CommandApdu
from otphsm.smartcard.cns_files import ABSENT_PATHS, EF_C_CARTA, EF_ID_CARTA, EF_KEY_PUB

# --- SELECT --------------------------------------------------------------------------------------


def test_select_step_by_step_and_relative(cns_card: CnsCard) -> None:
    spec = cns_card.export_spec()
    assert sw(cns_card, "00A40000023F00") == 0x9000
    assert sw(cns_card, "00A40000021100") == 0x9000
    fci, status = tx(cns_card, "00A40000021102")
    assert status == 0x9000
    assert fci_tags(fci)[0x83] == H("1102")
    assert sw(cns_card, "00A4000C021101") == 0x9000
    assert read_selected(cns_card, 64) == spec.files[EF_C_CARTA][:64]
    assert sw(cns_card, "00A4030C") == 0x9000
    assert sw(cns_card, "00A4030C") == 0x6A82
    assert sw(cns_card, "00A4010C021000") == 0x9000
    assert sw(cns_card, "00A4020C021003") == 0x9000
    assert read_selected(cns_card, 16) == spec.files[EF_ID_CARTA]
    assert sw(cns_card, "00A4090C021100") == 0x6A82
    assert sw(cns_card, "00A4080C043F003F01") == 0x9000
    assert read_selected(cns_card, len(spec.files[EF_KEY_PUB])) == spec.files[EF_KEY_PUB]
    assert sw(cns_card, "00A4000C00") == 0x9000
    assert sw(cns_card, "00B0000001") == 0x6986


def test_select_by_fid_finds_siblings_of_the_current_df(cns_card: CnsCard) -> None:
    assert sw(cns_card, "00A4080C021000") == 0x9000
    assert sw(cns_card, "00A4000C021102") == 0x6A82
    assert sw(cns_card, "00A4000C021100") == 0x9000
    assert sw(cns_card, "00A4000C021102") == 0x9000
    assert sw(cns_card, "00A4000C023F01") == 0x9000
    assert sw(cns_card, "00A4000C021003") == 0x6A82
    assert sw(cns_card, "00A4000C023F00") == 0x9000
    assert sw(cns_card, "00A4000C021003") == 0x6A82


def test_select_by_child_type(cns_card: CnsCard) -> None:
    assert sw(cns_card, "00A4010C023F01") == 0x6A82
    assert sw(cns_card, "00A4020C021100") == 0x6A82
    assert sw(cns_card, "00A4020C023F01") == 0x9000
    assert sw(cns_card, "00A4010C021100") == 0x9000
    assert sw(cns_card, "00A4010C0211") == 0x6700


def test_fci_and_fcp_templates(cns_card: CnsCard) -> None:
    spec = cns_card.export_spec()
    fci, status = tx(cns_card, "00A40800041100110100")
    tags = fci_tags(fci)
    assert (fci[0], status) == (0x6F, 0x9000)
    assert int.from_bytes(tags[0x80], "big") == len(spec.files[EF_C_CARTA])
    assert tags[0x82][0] == 0x01
    assert tags[0x83] == H("1101")
    assert tags[0x86] == H("00FFFFFFFFFFFFFFFF")
    assert tags[0x8A] == H("05")
    fcp, fcp_status = tx(cns_card, "00A408040411001101")
    assert (fcp[0], fci_tags(fcp), fcp_status) == (0x62, tags, 0x9000)
    df, df_status = tx(cns_card, "00A40000023F00")
    assert df_status == 0x9000
    df_tags = fci_tags(df)
    assert 0x80 not in df_tags
    assert (df_tags[0x82], df_tags[0x83], len(df_tags[0x86])) == (H("38"), H("3F00"), 9)


@pytest.mark.parametrize("path", [p.hex() for p in ABSENT_PATHS])
def test_absent_files_answer_6a82_in_every_mode(cns_card: CnsCard, path: str) -> None:
    rel = path[4:]
    length = f"{len(rel) // 2:02X}"
    assert sw(cns_card, f"00A4080C{length}{rel}") == 0x6A82
    assert sw(cns_card, f"00A40800{length}{rel}00") == 0x6A82


def test_a_failed_select_keeps_the_current_file(cns_card: CnsCard) -> None:
    card_id = cns_card.export_spec().files[EF_ID_CARTA]
    assert sw(cns_card, "00A4080C0410001003") == 0x9000
    assert sw(cns_card, "00A4080C0410001009") == 0x6A82
    assert sw(cns_card, "00A4000C021101") == 0x6A82
    assert tx(cns_card, "00B0000004") == (card_id[:4], 0x9000)


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("00A4080204100010 03", 0x6A86),
        ("00A4050C021000", 0x6A86),
        ("00A4080C03100010", 0x6700),
        ("00A4080C00", 0x6700),
        ("00A40C000110", 0x6A86),
        ("00A4030C021000", 0x6700),
        ("00A4040006A00000000101", 0x6A82),
        ("00A4040C07A0000000030000", 0x6A82),
    ],
)
def test_select_refusals(cns_card: CnsCard, apdu: str, status: int) -> None:
    assert sw(cns_card, apdu) == status


# --- READ BINARY ---------------------------------------------------------------------------------


def test_read_binary_offsets_and_end_of_file(cns_card: CnsCard) -> None:
    cert = cns_card.export_spec().files[EF_C_CARTA]
    size = len(cert)
    assert size > 0x200
    assert sw(cns_card, "00A4080C0411001101") == 0x9000
    assert tx(cns_card, "00B0010010") == (cert[0x100:0x110], 0x9000)
    last = CommandApdu(0, 0xB0, (size - 3) >> 8, (size - 3) & 0xFF, le=0x10).encode()
    assert tx(cns_card, last) == (cert[-3:], 0x6282)
    at_end = CommandApdu(0, 0xB0, size >> 8, size & 0xFF, le=1).encode()
    assert tx(cns_card, at_end) == (b"", 0x6282)
    beyond = CommandApdu(0, 0xB0, (size + 1) >> 8, (size + 1) & 0xFF, le=1).encode()
    assert tx(cns_card, beyond) == (b"", 0x6B00)
    assert sw(cns_card, "00B07F0001") == 0x6B00
    whole, status = tx(cns_card, CommandApdu(0, 0xB0, 0, 0, le=65536).encode())
    assert (whole, status) == (cert, 0x6282)


def test_read_binary_refusals(cns_card: CnsCard) -> None:
    assert sw(cns_card, "00B0000010") == 0x6986
    assert sw(cns_card, "00A4080C021100") == 0x9000
    assert sw(cns_card, "00B0000010") == 0x6986
    assert sw(cns_card, "00A4080C0411001102") == 0x9000
    assert sw(cns_card, "00B00000") == 0x6700
    assert sw(cns_card, "00B0000001AA") == 0x6700
    assert sw(cns_card, "00B0000001AA10") == 0x6700
    assert sw(cns_card, "00B0830010") == 0x6A81
    assert len(tx(cns_card, "00B0000010")[0]) == 16


# --- foreign probes and garbage ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("00A4040007A000000116DB0000", 0x6A82),  # generic applets OpenSC probes
        ("00A4040006A0000000010100", 0x6A82),  # Muscle
        ("00A404000BE82B0601040181C31F020100", 0x6A82),  # SmartCard-HSM
        ("00A4040009A0000003080000100000", 0x6A82),  # PIV
        ("00CADF3005", 0x6A88),  # setcos GET DATA
        ("00CA010000", 0x6A88),
        ("80CA9F7F00", 0x6E00),
        ("B0A4000002 3F00", 0x6E00),
        ("8016020000", 0x6E00),  # CardOS DIRECTORY
        ("FFCA000000", 0x6E00),  # PC/SC pseudo-APDU
        ("0C20001008" + "3132333435363738", 0x6E00),
        ("0012000000", 0x6D00),
        ("00C0000010", 0x6D00),
        ("00D6000001FF", 0x6D00),
        ("0088000000", 0x6D00),
    ],
)
def test_foreign_probes_get_errors_never_9000(cns_card: CnsCard, apdu: str, status: int) -> None:
    assert sw(cns_card, apdu) == status


@pytest.mark.parametrize("raw", ["", "00", "00A4", "00A408", "00A4080C05100010", "00A4000C0000"])
def test_garbage_gets_wrong_length(cns_card: CnsCard, raw: str) -> None:
    assert cns_card.process(H(raw)) == H("6700")


def test_get_challenge(cns_card: CnsCard) -> None:
    assert tx(cns_card, "0084000008") == (H("0001020304050607"), 0x9000)
    assert tx(cns_card, "0084000004") == (H("08090A0B"), 0x9000)
    assert sw(cns_card, "00840000") == 0x6700
    assert sw(cns_card, "0084010008") == 0x6A86


def test_an_internal_failure_becomes_6f00(card_spec_1024: CardSpec) -> None:
    def broken(n: int) -> bytes:
        raise RuntimeError("no entropy")

    card = CnsCard(card_spec_1024, random_bytes=broken)
    assert card.process(H("0084000008")) == H("6F00")
    assert sw(card, "00A4000C023F00") == 0x9000
