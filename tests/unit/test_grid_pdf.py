"""The printable Security Card renders: rasterised with pdftoppm the page is not blank, and
pdftotext finds the serial, the holder and every cell where the grid says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.pdf_checks import dark_fraction, pdf_text, read_grid

from otphsm.service.grid_pdf import CardPrint, render_grid_card

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="needs poppler-utils (pdftoppm, pdftotext)",
)


@pytest.mark.parametrize(("cells", "digits"), [(50, 3), (100, 6), (10, 2)])
def test_the_card_renders_with_every_cell(tmp_path: Path, cells: int, digits: int) -> None:
    values = [f"{(n * 7919) % 10**digits:0{digits}d}" for n in range(1, cells + 1)]
    pdf = render_grid_card(
        CardPrint("otphsm", "GRID-0A1B2C3D4E", "Niccolò D'Alessandro", 1_772_000_000, values)
    )
    assert pdf.startswith(b"%PDF-")
    assert 0.01 < dark_fraction(pdf, tmp_path) < 0.5
    text = pdf_text(pdf, tmp_path)
    assert "GRID-0A1B2C3D4E" in text and "Niccolò D'Alessandro" in text and "2026-02-25" in text
    assert read_grid(text) == {n: values[n - 1] for n in range(1, cells + 1)}


def test_the_same_card_renders_to_the_same_bytes() -> None:
    card = CardPrint("otphsm", "GRID-0A1B2C3D4E", "Ада Lovelace", 1_772_000_000, ["123"] * 50)
    assert render_grid_card(card) == render_grid_card(card)  # the issue time, not the clock
