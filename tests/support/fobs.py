"""Shared data for the key fob tests: a vendor's keys and batches."""

from __future__ import annotations

from typing import Any

from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.simulators.token.keyfob import KeyFob
from otphsm.simulators.token.pskc_factory import BatchSpec, make_fobs

PSK = bytes.fromhex("12345678901234567890abcdefabcdef")
PASSWORD = "vendor batch 2026"
HOTP = OtpParameters(mode=OtpMode.HOTP)
TOTP_SHA256 = OtpParameters(OtpMode.TOTP, HashAlgorithm.SHA256, digits=8)


def batch(
    count: int = 3, first: int = 1234, params: OtpParameters = HOTP, **kw: Any
) -> list[KeyFob]:
    return make_fobs(BatchSpec(count, first, params, **kw))
