"""The SDK's Ed25519 (libsodium through pynacl, as installed) gives the verdicts the device is held to.

tests/device/test_ed25519*.py hold the device code to the verdicts stored
in tests/data/ed25519 (libsodium's, recorded with PyNaCl 1.6.2). Here the
installed libsodium must still give every one of them, so the two
implementations accept exactly the same set of the 914 CCTV cases and
give Wycheproof's expected result on its 151.
"""

import json
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

DATA = Path(__file__).resolve().parent / "data" / "ed25519"


def _lines(name):
    with (DATA / name).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _sodium(key_hex, msg_hex, sig_hex):
    try:
        VerifyKey(bytes.fromhex(key_hex)).verify(bytes.fromhex(msg_hex), bytes.fromhex(sig_hex))
        return True
    except (BadSignatureError, ValueError):
        return False


def test_cctv_installed_libsodium_gives_the_recorded_verdicts():
    cases = _lines("cctv.json")
    assert len(cases) == 914
    differ = [c["n"] for c in cases if _sodium(c["key"], c["msg"], c["sig"]) != c["libsodium"]]
    assert not differ, "libsodium now decides differently on CCTV cases %s" % differ[:20]
    assert sum(c["libsodium"] for c in cases) == 43


def test_wycheproof_installed_libsodium():
    cases = _lines("wycheproof.json")
    assert len(cases) == 151
    wrong = [c for c in cases if _sodium(c["pk"], c["msg"], c["sig"]) != c["valid"]]
    assert not wrong, wrong[:3]
