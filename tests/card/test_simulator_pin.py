"""The simulated card's PIN and PUK: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER."""

from __future__ import annotations

import pytest
from support.card_apdus import H, login, ref, sw, verify_apdu
from support.card_fixtures import CARD_PIN, CARD_PUK

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.smartcard.cns_files import pad_pin


def test_wrong_pins_count_down_then_block_for_good(cns_card: CnsCard) -> None:
    assert sw(cns_card, verify_apdu(cns_card, "11111")) == 0x63C2
    assert sw(cns_card, verify_apdu(cns_card, "11111")) == 0x63C1
    assert sw(cns_card, verify_apdu(cns_card, "11111")) == 0x6983
    assert cns_card.pin_tries_left == 0
    assert sw(cns_card, verify_apdu(cns_card, CARD_PIN)) == 0x6983
    cns_card.power_on()
    assert sw(cns_card, verify_apdu(cns_card, CARD_PIN)) == 0x6983
    assert not cns_card.pin_verified


def test_a_correct_pin_resets_the_tries(cns_card: CnsCard) -> None:
    assert sw(cns_card, verify_apdu(cns_card, "00000")) == 0x63C2
    assert sw(cns_card, verify_apdu(cns_card, "00000")) == 0x63C1
    login(cns_card)
    assert cns_card.pin_tries_left == 3
    assert sw(cns_card, verify_apdu(cns_card, "00000")) == 0x63C2
    assert not cns_card.pin_verified


def test_verify_without_data_reports_the_state(cns_card: CnsCard) -> None:
    status_apdu = f"002000{ref(cns_card)}"
    assert sw(cns_card, status_apdu) == 0x63C3
    login(cns_card)
    assert sw(cns_card, status_apdu) == 0x9000
    for _ in range(3):
        sw(cns_card, verify_apdu(cns_card, "99999"))
    assert sw(cns_card, status_apdu) == 0x6983


def test_verify_checks_reference_parameters_and_length(
    cns_card_1024: CnsCard, cns_card_2048: CnsCard
) -> None:
    pin = pad_pin(CARD_PIN).hex()
    assert sw(cns_card_1024, f"0020009008{pin}") == 0x6A88
    assert sw(cns_card_1024, f"0020001108{pin}") == 0x6A88
    assert sw(cns_card_2048, f"0020001008{pin}") == 0x6A88
    assert sw(cns_card_1024, f"0020011008{pin}") == 0x6A86
    assert sw(cns_card_1024, "00200010053132333435") == 0x6700
    assert cns_card_1024.pin_tries_left == 3


def test_change_reference_data(cns_card: CnsCard) -> None:
    change = f"002400{ref(cns_card)}10"
    new = pad_pin("24680").hex()
    assert sw(cns_card, change + pad_pin("00000").hex() + new) == 0x63C2
    assert sw(cns_card, change + pad_pin(CARD_PIN).hex() + new) == 0x9000
    assert cns_card.pin_verified
    assert sw(cns_card, verify_apdu(cns_card, CARD_PIN)) == 0x63C2
    assert sw(cns_card, verify_apdu(cns_card, "24680")) == 0x9000
    assert cns_card.export_spec().pin == "24680"


@pytest.mark.parametrize(
    "block",
    ["31323334FFFFFFFF", "3132613435FFFFFF", "31323334FF353637", "0000000000000000"],
    ids=["too-short", "letter", "padding-inside", "zeros"],
)
def test_change_refuses_a_malformed_new_pin_without_using_a_try(
    cns_card: CnsCard, block: str
) -> None:
    apdu = H(f"002400{ref(cns_card)}10") + pad_pin(CARD_PIN) + H(block)
    assert sw(cns_card, apdu) == 0x6A80
    assert cns_card.pin_tries_left == 3


def test_change_wrong_length_and_parameters(cns_card: CnsCard) -> None:
    r = ref(cns_card)
    assert sw(cns_card, f"002400{r}08" + pad_pin(CARD_PIN).hex()) == 0x6700
    assert sw(cns_card, f"002401{r}08" + pad_pin(CARD_PIN).hex()) == 0x6A86


def block_pin(card: CnsCard) -> None:
    for _ in range(3):
        sw(card, verify_apdu(card, "99999"))
    assert card.pin_tries_left == 0


def test_puk_unblocks_and_sets_a_new_pin(cns_card: CnsCard) -> None:
    block_pin(cns_card)
    rrc = f"002C00{ref(cns_card)}10"
    assert sw(cns_card, rrc + pad_pin("11111111").hex() + pad_pin("13579").hex()) == 0x63C9
    assert cns_card.puk_tries_left == 9
    assert sw(cns_card, rrc + pad_pin(CARD_PUK).hex() + pad_pin("13579").hex()) == 0x9000
    assert cns_card.puk_tries_left == 10
    assert cns_card.pin_tries_left == 3
    assert not cns_card.pin_verified
    assert sw(cns_card, verify_apdu(cns_card, "13579")) == 0x9000


def test_puk_alone_unblocks_keeping_the_pin(cns_card: CnsCard) -> None:
    block_pin(cns_card)
    assert sw(cns_card, f"002C01{ref(cns_card)}08" + pad_pin(CARD_PUK).hex()) == 0x9000
    login(cns_card)


def test_the_puk_blocks_after_its_own_tries(cns_card: CnsCard) -> None:
    rrc = f"002C00{ref(cns_card)}10"
    wrong = rrc + pad_pin("00000000").hex() + pad_pin("13579").hex()
    statuses = [sw(cns_card, wrong) for _ in range(10)]
    assert statuses == [0x63C0 | n for n in range(9, 0, -1)] + [0x6983]
    assert sw(cns_card, rrc + pad_pin(CARD_PUK).hex() + pad_pin("13579").hex()) == 0x6983
    assert cns_card.pin_tries_left == 3
    login(cns_card)


def test_reset_retry_counter_parameters(cns_card: CnsCard) -> None:
    r = ref(cns_card)
    puk, new = pad_pin(CARD_PUK).hex(), pad_pin("13579").hex()
    assert sw(cns_card, f"002C001110{puk}{new}") == 0x6A88
    assert sw(cns_card, f"002C02{r}10{puk}{new}") == 0x6A86
    assert sw(cns_card, f"002C00{r}08{puk}") == 0x6700
    assert sw(cns_card, f"002C00{r}10{puk}" + "3132FFFFFFFFFFFF") == 0x6A80
    assert cns_card.puk_tries_left == 10


def test_export_spec_carries_the_counters(cns_card: CnsCard) -> None:
    sw(cns_card, verify_apdu(cns_card, "99999"))
    sw(cns_card, f"002C01{ref(cns_card)}08" + pad_pin("00000").hex())
    spec = cns_card.export_spec()
    assert (spec.pin, spec.pin_tries_left, spec.puk_tries_left) == (CARD_PIN, 2, 9)
    again = CnsCard(spec)
    assert (again.pin_tries_left, again.puk_tries_left) == (2, 9)
