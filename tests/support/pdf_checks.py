"""Looking at a PDF as a person would: rasterised (is anything printed?) and as text (what
does it say?), with poppler's pdftoppm and pdftotext."""

from __future__ import annotations

import subprocess
from pathlib import Path


def dark_fraction(pdf: bytes, tmp_path: Path) -> float:
    """Rasterise page 1 to greyscale (PGM) and return the share of dark pixels."""
    source = tmp_path / "raster.pdf"
    source.write_bytes(pdf)
    for old in tmp_path.glob("page*.pgm"):
        old.unlink()
    subprocess.run(
        [
            "pdftoppm",
            "-gray",
            "-r",
            "40",
            "-f",
            "1",
            "-l",
            "1",
            str(source),
            str(tmp_path / "page"),
        ],
        check=True,
        timeout=60,
    )
    (page,) = tmp_path.glob("page*.pgm")
    magic, width, height, maxval, pixels = page.read_bytes().split(maxsplit=4)
    assert magic == b"P5" and int(maxval) == 255
    assert len(pixels) == int(width) * int(height)
    return sum(1 for value in pixels if value < 128) / len(pixels)


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    source = tmp_path / "text.pdf"
    source.write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-layout", str(source), "-"], check=True, capture_output=True, timeout=60
    )
    return done.stdout.decode()


def read_grid(text: str) -> dict[int, str]:
    """The cells as a person reads them off the printed card: number, then value."""
    cells: dict[int, str] = {}
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) >= 2 and all(token.isdigit() for token in tokens):
            cells.update((int(n), v) for n, v in zip(tokens[::2], tokens[1::2], strict=True))
    return cells
