"""ln.sha512 and ln.ed25519 against hashlib and libsodium (PyNaCl), on random input.

CPython only (hypothesis, pynacl); the device modules run the vector files
under MicroPython too (tests/device/test_sha512.py, test_ed25519*.py).
"""

import hashlib
import sys
from pathlib import Path

import nacl.exceptions
import nacl.signing
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware"))

from ln import ed25519, sha512  # noqa: E402

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=600)


def _nacl_verify(public, msg, sig):
    try:
        nacl.signing.VerifyKey(public).verify(msg, sig)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False


@given(st.binary(max_size=2000), st.booleans())
def test_sha512_matches_hashlib(data, halves):
    was = sha512.HALVES
    sha512.select(halves)
    try:
        assert sha512.sha512(data) == hashlib.sha512(data).digest()
    finally:
        sha512.select(was)


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_sha512_pieces(pieces):
    h = sha512.SHA512()
    for p in pieces:
        h.update(p)
    assert h.digest() == hashlib.sha512(b"".join(pieces)).digest()


@settings(max_examples=60, deadline=None)
@given(seeds, messages)
def test_sign_matches_libsodium(seed, msg):
    key = ed25519.SigningKey(seed)
    theirs = nacl.signing.SigningKey(seed)
    assert key.public == bytes(theirs.verify_key)
    assert ed25519.public_key(seed) == key.public
    sig = key.sign(msg)
    assert sig == theirs.sign(msg).signature
    assert ed25519.verify(key.public, msg, sig)


@settings(max_examples=100, deadline=None)
@given(seeds, messages, st.integers(0, 63), st.integers(0, 7), st.booleans())
def test_verify_agrees_on_mutations(seed, msg, byte, bit, flip_msg):
    key = nacl.signing.SigningKey(seed)
    public = bytes(key.verify_key)
    sig = bytearray(key.sign(msg).signature)
    sig[byte] ^= 1 << bit
    if flip_msg:
        msg = msg + b"\x00"
    sig = bytes(sig)
    assert ed25519.verify(public, msg, sig) == _nacl_verify(public, msg, sig)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), messages, st.binary(min_size=64, max_size=64))
def test_verify_agrees_on_random_bytes(public, msg, sig):
    assert ed25519.verify(public, msg, sig) == _nacl_verify(public, msg, sig)


@settings(max_examples=60, deadline=None)
@given(seeds, messages, st.integers(0, 3))
def test_verify_agrees_on_s_plus_multiples_of_l(seed, msg, m):
    # S + m L: malleated S, refused by both (S must be below L).
    key = nacl.signing.SigningKey(seed)
    public = bytes(key.verify_key)
    sig = key.sign(msg).signature
    s = int.from_bytes(sig[32:], "little") + m * ed25519.L
    if s >= 1 << 256:
        return
    sig2 = sig[:32] + s.to_bytes(32, "little")
    assert ed25519.verify(public, msg, sig2) == _nacl_verify(public, msg, sig2) == (m == 0)
