# ln.sha512 against FIPS 180-4 examples and the SHA-512 of every message in
# tests/data/ed25519/sign.json; whole, in pieces and one byte at a time.
import _vectors
from ln import sha512 as sha

PORTS = ("unix", "wasm")


h = _vectors.unhex

# FIPS 180-4 examples (NIST CSRC "Cryptographic Standards and Guidelines:
# Examples with Intermediate Values", SHA-512): "abc", the 896-bit
# two-block message, and the empty message.
_ABC = h(
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
)
_TWO_BLOCK_MSG = (
    b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
    b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
)
_TWO_BLOCK = h(
    "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
    "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
)
_EMPTY = h(
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)


def test_fips_examples():
    assert sha.sha512(b"abc") == _ABC
    assert sha.sha512(_TWO_BLOCK_MSG) == _TWO_BLOCK
    assert sha.sha512(b"") == _EMPTY
    assert sha.SHA512().digest() == _EMPTY


def test_accepts_bytearray_and_memoryview():
    assert sha.sha512(bytearray(b"abc")) == _ABC
    assert sha.sha512(memoryview(b"xabcx")[1:4]) == _ABC


def test_digest_does_not_end_the_hash():
    s = sha.SHA512()
    s.update(b"ab")
    s.digest()
    s.update(b"c")
    assert s.digest() == _ABC
    assert s.digest() == _ABC


def test_block_edge_messages():
    n = 0
    for case in _vectors.lines("ed25519/sign.json"):
        msg = h(case["message"])
        want = h(case["sha512"])
        assert sha.sha512(msg) == want, case["case"]
        n += 1
    assert n == 28


def test_pieces_and_single_bytes():
    for case in _vectors.lines("ed25519/sign.json"):
        msg = h(case["message"])
        want = h(case["sha512"])
        for step in (1, 7, 127, 129):
            s = sha.SHA512()
            for i in range(0, len(msg), step):
                s.update(msg[i : i + step])
            assert s.digest() == want, (case["case"], step)


def test_long_message():
    # 100 blocks of 'a' in 1000-byte pieces; the digest is CPython hashlib's.
    s = sha.SHA512()
    piece = b"a" * 1000
    for _ in range(12):
        s.update(piece)
    s.update(piece[:800])
    assert s.digest() == h(
        "898de6ba70de140a0a545980ecd2217f0767e49fb2009b2af01bf6f2aa4ee0f3"
        "e0cc246626d433291caea9899ad826b2cd067a85f806cfd5554c9bbf6183439a"
    )


def test_both_paths_give_the_same_digests():
    was = sha.HALVES
    try:
        for halves in (False, True):
            sha.select(halves)
            assert sha.sha512(b"abc") == _ABC, halves
            assert sha.sha512(_TWO_BLOCK_MSG) == _TWO_BLOCK, halves
            for case in _vectors.lines("ed25519/sign.json"):
                assert sha.sha512(h(case["message"])) == h(case["sha512"]), (halves, case["case"])
    finally:
        sha.select(was)
