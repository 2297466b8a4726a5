# ln.ed25519.verify on the 914 CCTV edge cases (C2SP/CCTV): the verdict on
# each must be libsodium's, recorded beside the case in
# tests/data/ed25519/cctv.json (see its README).
import _vectors
from ln import ed25519 as ed

PORTS = ("unix", "wasm")


h = _vectors.unhex

# Flags of the cases libsodium refuses whatever else they carry.
_REFUSED_FLAGS = (
    "low_order_R",
    "low_order_A",
    "non_canonical_R",
    "non_canonical_A",
    "low_order_residue",
    "reencoded_k",
)


def test_cctv_same_verdict_as_libsodium():
    n = accepted = 0
    wrong = []
    for case in _vectors.lines("ed25519/cctv.json"):
        got = ed.verify(h(case["key"]), h(case["msg"]), h(case["sig"]))
        if got != case["libsodium"]:
            wrong.append(case["n"])
        accepted += got
        n += 1
    assert n == 914
    assert not wrong, "differs from libsodium on cases %s" % wrong
    assert accepted == 43


def test_cctv_flags_rule():
    # docs/ed25519.md: accepted exactly when no flag outside the
    # low-order components of A and R is set.
    for case in _vectors.lines("ed25519/cctv.json"):
        flags = case["flags"] or []
        refused = False
        for f in flags:
            if f in _REFUSED_FLAGS:
                refused = True
        assert case["libsodium"] == (not refused), case["n"]
