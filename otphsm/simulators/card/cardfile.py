"""The card file: one JSON document holding a whole simulated card (test material, key in clear).

```
{"format": "otphsm-cns-card", "version": 1, "label": "MARIO ROSSI",
 "atr": "3BFF…", "pin": "12345678", "puk": "87654321",
 "pin_tries_left": 3, "puk_tries_left": 10,          (optional)
 "files": {"3F0010001003": "<hex>", …},              (EF path from 3F00 → content)
 "private_key_pem": "-----BEGIN PRIVATE KEY-----…", "extra": {"card_id": …}}
```
"""

from __future__ import annotations

import binascii
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from otphsm.core.errors import InvalidInput
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import PIN_TRIES, PUK_TRIES, CardSpec

FORMAT = "otphsm-cns-card"
VERSION = 1


class CardFileError(InvalidInput):
    """A card file that cannot be read or does not describe a card."""


def card_spec_to_json(spec: CardSpec) -> dict[str, Any]:
    key_pem = spec.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "format": FORMAT,
        "version": VERSION,
        "label": spec.label,
        "atr": spec.atr.hex().upper(),
        "pin": spec.pin,
        "puk": spec.puk,
        "pin_tries_left": spec.pin_tries_left,
        "puk_tries_left": spec.puk_tries_left,
        "files": {path.hex().upper(): content.hex() for path, content in spec.files.items()},
        "private_key_pem": key_pem.decode("ascii"),
        "extra": dict(spec.extra),
    }


def card_spec_from_json(document: Any) -> CardSpec:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CardFileError(f"not an {FORMAT} document")
    if document.get("version") != VERSION:
        raise CardFileError(f"unsupported card file version {document.get('version')!r}")
    try:
        key = serialization.load_pem_private_key(
            document["private_key_pem"].encode("ascii"), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CardFileError("the card key is not an RSA key")
        return CardSpec(
            atr=bytes.fromhex(document["atr"]),
            files={
                bytes.fromhex(path): bytes.fromhex(content)
                for path, content in document["files"].items()
            },
            pin=str(document["pin"]),
            puk=str(document["puk"]),
            private_key=key,
            pin_tries_left=int(document.get("pin_tries_left", PIN_TRIES)),
            puk_tries_left=int(document.get("puk_tries_left", PUK_TRIES)),
            label=str(document.get("label", "")),
            extra={str(k): str(v) for k, v in document.get("extra", {}).items()},
        )
    except CardFileError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, binascii.Error) as exc:
        raise CardFileError(f"malformed card file: {exc!r}") from exc


def save_card(path: Path | str, spec: CardSpec) -> None:
    """Write atomically, readable by the owner only (it holds the PIN and the private key)."""
    target = Path(path)
    text = json.dumps(card_spec_to_json(spec), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_card_spec(path: Path | str) -> CardSpec:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CardFileError(f"cannot read card file {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardFileError(f"card file {path} is not JSON: {exc}") from exc
    return card_spec_from_json(document)


def load_card(path: Path | str, *, random_bytes: Callable[[int], bytes] = os.urandom) -> CnsCard:
    return CnsCard(read_card_spec(path), random_bytes=random_bytes)
