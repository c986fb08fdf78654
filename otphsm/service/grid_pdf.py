"""The printable Security Card: one A4 page with the issuer, the serial, the holder's name, the
grid of numbered cells and how to use it. Rendered with fpdf2 (pure Python, core fonts, no
system fonts or renderer needed). The cell values are secret: the PDF is built in memory,
returned once, and neither stored nor logged.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from fpdf import FPDF

MARGIN_MM = 18.0
CELL_HEIGHT_MM = 9.0
COURIER_EM_MM = 0.6 * 25.4 / 72
"""Width of one Courier character per point of font size, in mm."""


@dataclass(frozen=True, slots=True)
class CardPrint:
    issuer: str
    serial: str
    holder: str
    """The citizen's name as printed."""
    issued_at: int
    """Unix seconds: the issue date printed, and the PDF's creation date (reproducible)."""
    values: Sequence[str]
    """Cell n is values[n - 1]."""


def render_grid_card(card: CardPrint) -> bytes:
    issued = dt.datetime.fromtimestamp(card.issued_at, dt.UTC)
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creation_date(issued)
    pdf.set_title(_latin1(f"{card.issuer} Security Card {card.serial}"))
    pdf.set_author(_latin1(card.issuer))
    pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
    pdf.set_auto_page_break(auto=False)
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(0, 10, _latin1(f"{card.issuer} - Security Card"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    for label, value in (
        ("Holder", card.holder),
        ("Serial", card.serial),
        ("Issued", issued.date().isoformat()),
    ):
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(24, 7, f"{label}:")
        pdf.set_font("Helvetica", "", 11)
        pdf.cell(0, 7, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(5)
    _grid(pdf, card.values)
    pdf.ln(6)
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(
        0,
        5,
        "At each login you will be asked for the values of two cells, by number. Type only "
        "what is asked. Nobody from the service will ever ask you for more cells, or for the "
        "whole card. Keep the card apart from your documents; if you lose it, have it revoked "
        "at once.",
    )
    return bytes(pdf.output())


def _grid(pdf: FPDF, values: Sequence[str]) -> None:
    columns = 5 if len(values) <= 50 else 10
    rows = math.ceil(len(values) / columns)
    width = (pdf.w - 2 * MARGIN_MM) / columns
    number_width = width * (0.42 if columns == 5 else 0.32)
    number_size = 10 if columns == 5 else 7
    digits = max((len(value) for value in values), default=1)
    size = min(13.0, (width - number_width - 2) / (digits * COURIER_EM_MM))
    pdf.set_draw_color(60, 60, 60)
    pdf.set_line_width(0.3)
    top = pdf.get_y()
    for row in range(rows):
        for column in range(columns):
            index = column * rows + row  # numbers run down each column
            if index >= len(values):
                continue
            x = MARGIN_MM + column * width
            y = top + row * CELL_HEIGHT_MM
            pdf.set_fill_color(225, 225, 225)
            pdf.rect(x, y, number_width, CELL_HEIGHT_MM, style="DF")
            pdf.rect(x + number_width, y, width - number_width, CELL_HEIGHT_MM, style="D")
            pdf.set_xy(x, y)
            pdf.set_font("Helvetica", "B", number_size)
            pdf.cell(number_width, CELL_HEIGHT_MM, f"{index + 1:02d}", align="C")
            pdf.set_font("Courier", "B", size)
            pdf.cell(width - number_width, CELL_HEIGHT_MM, values[index], align="C")
    pdf.set_xy(MARGIN_MM, top + rows * CELL_HEIGHT_MM)


def _latin1(text: str) -> str:
    """The core fonts cover Latin-1 (Italian names fit); anything else prints as '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")
