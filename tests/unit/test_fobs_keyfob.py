"""The emulated key fob, the vendor's factory and `otphsm sim fob …` (pure: no HSM, no store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otphsm.cli.main import main
from otphsm.core.errors import InvalidInput, NotFound
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.pskc import read_pskc_file
from otphsm.simulators.token.keyfob import KeyFob, load_fobs, save_fobs
from otphsm.simulators.token.pskc_factory import SEED_BYTES, BatchSpec, make_fobs

RFC_SEED = b"12345678901234567890"
# RFC 4226 Appendix D, counters 0..9
RFC4226 = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]


def test_button_presses_follow_rfc_4226() -> None:
    fob = KeyFob("FOB-00000001", RFC_SEED, OtpParameters(OtpMode.HOTP))
    assert [fob.press() for _ in range(10)] == RFC4226
    assert fob.counter == 10
    with pytest.raises(InvalidInput, match="press its button"):
        fob.code(59)


def test_the_display_follows_rfc_6238_and_its_own_clock() -> None:
    fob = KeyFob("FOB-00000002", RFC_SEED, OtpParameters(OtpMode.TOTP, digits=8))
    assert fob.code(59) == "94287082"  # RFC 6238 Appendix B, SHA1
    assert fob.code(1111111109) == "07081804"
    fob.clock_skew = 30  # a fob one step fast shows the next step's code
    assert fob.code(1111111079) == "07081804"
    with pytest.raises(InvalidInput, match="read its display"):
        fob.press()
    assert fob.show(1111111079) == "07081804"


def test_state_is_saved_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "fobs.json"
    fobs = make_fobs(BatchSpec(2, 10, OtpParameters(OtpMode.HOTP), start_counter=3))
    fobs[0].press()
    save_fobs(path, fobs)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_fobs(path)
    assert [(f.serial, f.secret, f.params, f.counter) for f in loaded.values()] == [
        (f.serial, f.secret, f.params, f.counter) for f in fobs
    ]
    assert loaded["FOB-00000010"].press() == fobs[0].press()
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InvalidInput, match="not a key fob state file"):
        load_fobs(path)
    with pytest.raises(NotFound):
        load_fobs(tmp_path / "missing.json")


def test_repr_never_shows_the_secret() -> None:
    fob = KeyFob("FOB-00000003", RFC_SEED)
    assert RFC_SEED.decode() not in repr(fob) and RFC_SEED.hex() not in repr(fob)


@pytest.mark.parametrize("algorithm", list(HashAlgorithm))
def test_the_factory_makes_serials_and_seeds_of_the_hash_size(algorithm: HashAlgorithm) -> None:
    fobs = make_fobs(BatchSpec(3, 99_999_997, OtpParameters(OtpMode.TOTP, algorithm)))
    assert [f.serial for f in fobs] == ["FOB-99999997", "FOB-99999998", "FOB-99999999"]
    assert {len(f.secret) for f in fobs} == {SEED_BYTES[algorithm]}
    assert len({f.secret for f in fobs}) == 3
    with pytest.raises(InvalidInput, match=r"0\.\.99999999"):
        BatchSpec(4, 99_999_997)


def test_cli_makes_a_batch_and_drives_the_fobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, state = tmp_path / "batch.pskc", tmp_path / "fobs.json"
    psk = "000102030405060708090a0b0c0d0e0f"
    args = ["sim", "fob", "make-batch", "--out", str(out), "--state", str(state)]
    assert main([*args, "--count", "3", "--psk", psk, "--first", "1234"]) == 0
    printed = capsys.readouterr().out
    assert "FOB-00001234 .. FOB-00001236" in printed
    fobs = load_fobs(state)
    assert fobs["FOB-00001235"].secret.hex() not in printed
    packages = read_pskc_file(out, psk=bytes.fromhex(psk))
    assert [bytes(p.secret) for p in packages] == [f.secret for f in fobs.values()]

    expected = KeyFob("FOB-00001235", fobs["FOB-00001235"].secret, OtpParameters(OtpMode.HOTP))
    for _ in range(2):
        assert main(["sim", "fob", "press", str(state), "FOB-00001235"]) == 0
        assert capsys.readouterr().out.strip() == expected.press()
    assert main(["sim", "fob", "show", str(state), "FOB-00001235"]) == 0
    assert capsys.readouterr().out.strip() == expected.press()
    assert load_fobs(state)["FOB-00001235"].counter == 3

    assert main(["sim", "fob", "list", str(state)]) == 0
    assert "FOB-00001235  hotp  SHA1  6 digits  counter 3" in capsys.readouterr().out
    assert main([*args, "--count", "1", "--psk", psk]) == 2  # exists: no overwrite
    assert "pass --force" in capsys.readouterr().err
    assert main(["sim", "fob", "press", str(state), "FOB-00000000"]) == 4  # not found


def test_cli_totp_batch_with_a_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "totp.pskc"
    assert (
        main(
            [
                "sim",
                "fob",
                "make-batch",
                "--out",
                str(out),
                "--password",
                "pw",
                "--totp",
                "--digits",
                "8",
                "--algorithm",
                "SHA256",
                "--iterations",
                "1000",
                "--first",
                "5",
            ]
        )
        == 0
    )
    capsys.readouterr()
    state = tmp_path / "totp.pskc.fobs.json"
    (fob,) = load_fobs(state).values()
    assert fob.params == OtpParameters(OtpMode.TOTP, HashAlgorithm.SHA256, 8)
    assert main(["sim", "fob", "show", str(state), "FOB-00000005", "--at", "1111111109"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == fob.code(1111111109)
    assert "(1 s left)" in captured.err
    assert main(["sim", "fob", "press", str(state), "FOB-00000005"]) == 2
    (package,) = read_pskc_file(out, password="pw")
    assert bytes(package.secret) == fob.secret
