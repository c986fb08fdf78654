"""QR codes for activation: PNG bytes for a station's screen or printer, Unicode text for a
terminal. Nothing here is stored or logged; the caller hands the result out once."""

from __future__ import annotations

import io
import urllib.parse
from dataclasses import dataclass

import segno

PNG_SCALE = 4


@dataclass(frozen=True, slots=True)
class Qr:
    png: bytes
    text: str


def activation_payload(issuer: str, activation_code: str) -> str:
    """What the token app scans: the 18 digits (without separators) and the issuer."""
    digits = "".join(ch for ch in activation_code if ch.isdigit())
    query = urllib.parse.urlencode({"issuer": issuer, "code": digits})
    return f"otphsm://activate?{query}"


def make_qr(payload: str) -> Qr:
    code = segno.make(payload, error="m", micro=False)
    png = io.BytesIO()
    code.save(png, kind="png", scale=PNG_SCALE)
    text = io.StringIO()
    code.terminal(out=text, compact=True)
    return Qr(png.getvalue(), text.getvalue())
