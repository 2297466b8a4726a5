# ln.ed25519: RFC 8032 tests 1-3 and the block-edge vectors (sign, verify,
# public key), all 151 Wycheproof cases, the API's refusals, and the facts
# the code is built on (constants, small-order list, fixed-base table).
# The 914 CCTV cases are in test_ed25519_cctv.py.
import _vectors
from ln import ed25519 as ed

PORTS = ("unix", "wasm")


h = _vectors.unhex


def test_rfc8032_and_block_edges():
    n = 0
    for case in _vectors.lines("ed25519/sign.json"):
        seed = h(case["seed"])
        msg = h(case["message"])
        sig = h(case["signature"])
        pub = h(case["public"])
        key = ed.SigningKey(seed)
        assert key.public == pub, case["case"]
        assert ed.public_key(seed) == pub, case["case"]
        assert key.sign(msg) == sig, case["case"]
        assert key.sign(msg) == sig, case["case"]  # signing twice changes nothing
        assert ed.verify(pub, msg, sig), case["case"]
        n += 1
    assert n == 28


def test_rfc8032_test1_literal():
    # RFC 8032 section 7.1, TEST 1, spelled out here too.
    seed = h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = ed.SigningKey(seed)
    assert key.public == h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert key.sign(b"") == h(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_tampering_is_refused():
    for case in _vectors.lines("ed25519/sign.json"):
        msg = h(case["message"])
        sig = h(case["signature"])
        pub = h(case["public"])
        assert not ed.verify(pub, msg + b"\x00", sig)
        for i in (0, 31, 32, 63):
            bad = bytearray(sig)
            bad[i] ^= 1
            assert not ed.verify(pub, msg, bytes(bad)), (case["case"], i)
        bad = bytearray(pub)
        bad[0] ^= 1
        assert not ed.verify(bytes(bad), msg, sig)
        break


def test_accepts_bytearray_and_memoryview():
    seed = bytearray(range(32))
    key = ed.SigningKey(seed)
    sig = key.sign(memoryview(b"xmsgx")[1:4])
    assert sig == key.sign(b"msg")
    assert ed.verify(bytearray(key.public), bytearray(b"msg"), memoryview(sig))


def test_wycheproof():
    n = 0
    for case in _vectors.lines("ed25519/wycheproof.json"):
        got = ed.verify(h(case["pk"]), h(case["msg"]), h(case["sig"]))
        assert got == case["valid"], (case["tcId"], case["flags"])
        n += 1
    assert n == 151


def test_wrong_lengths():
    key = ed.SigningKey(bytes(32))
    sig = key.sign(b"m")
    assert ed.verify(key.public, b"m", sig)
    assert not ed.verify(key.public, b"m", sig[:63])
    assert not ed.verify(key.public, b"m", sig + b"\x00")
    assert not ed.verify(key.public[:31], b"m", sig)
    assert not ed.verify(key.public + b"\x00", b"m", sig)
    assert not ed.verify(b"", b"m", b"")
    for bad in (b"", bytes(31), bytes(33), bytes(64)):
        for make in (ed.SigningKey, ed.public_key):
            try:
                make(bad)
            except ValueError:
                pass
            else:
                raise AssertionError("seed of %d bytes taken" % len(bad))


def test_generate_seed():
    seed = ed.generate_seed()
    assert isinstance(seed, bytes) and len(seed) == 32
    assert ed.generate_seed() != seed
    import hashlib

    asked = []

    def source(n):
        asked.append(n)
        return bytes(range(n))

    fixed = ed.generate_seed(source)
    assert asked == [64]  # twice the seed, hashed (docs/threat-model.md)
    assert fixed == hashlib.sha256(bytes(range(64))).digest()
    try:
        ed.generate_seed(lambda n: bytes(n - 1))
    except ValueError:
        pass
    else:
        raise AssertionError("short urandom taken")


def test_curve_constants():
    P = ed.P
    assert P == 2**255 - 19
    assert (ed.D * 121666 + 121665) % P == 0  # d = -121665/121666
    assert ed.SQRT_M1 * ed.SQRT_M1 % P == P - 1
    assert ed.BY * 5 % P == 4  # B's y = 4/5, x even
    assert ed.BX % 2 == 0
    xx = ed.BX * ed.BX % P
    yy = ed.BY * ed.BY % P
    assert (yy - xx - 1 - ed.D * xx % P * yy) % P == 0
    assert ed.L == 2**252 + 27742317777372353535851937790883648493


def test_small_order_list():
    # Each listed y (below P) is the y of a point whose 8th multiple is the
    # neutral element; P and P + 1 are 0 and 1 written non-canonically.
    ys = ed._SMALL_ORDER_Y
    assert len(ys) == 7
    assert ys[-2:] == (ed.P, ed.P + 1)
    assert (0, 1, ed.P - 1) == ys[:3]
    for y in ys[:5]:
        for sign in (0, 1):
            enc = (y | sign << 255).to_bytes(32, "little")
            pt = ed._decode(enc)
            if pt is None:
                continue  # x = 0 with the sign bit set
            q = pt
            for _ in range(3):
                q = ed._double(q)
            assert q[0] % ed.P == 0 and (q[1] - q[2]) % ed.P == 0, y


def test_base_mul_matches_double_and_add():
    b = (ed.BX, ed.BY, 1, ed.BX * ed.BY % ed.P)
    for k in (1, 2, 3, 15, 16, 17, 2**128 + 5, ed.L - 1, 2**253 - 1):
        want = (0, 1, 1, 0)
        add = b
        kk = k
        while kk:
            if kk & 1:
                want = ed._add(want, add)
            add = ed._double(add)
            kk >>= 1
        assert ed._encode(ed._base_mul(k)) == ed._encode(want), k
    assert ed._encode(ed._base_mul(ed.L)) == ed._encode((0, 1, 1, 0))


def _comb_table():
    # The signed comb of ln.ed25519, built from B by the plain point
    # formulas: per comb, the 16 patterns +-G_0 +-G_1 +-G_2 +-G_3 + G_4.
    pt = (ed.BX, ed.BY, 1, ed.BX * ed.BY % ed.P)
    out = bytearray()
    for _c in range(ed.COMB_COUNT):
        teeth = []
        for _j in range(ed.COMB_TEETH):
            teeth.append(pt)
            for _ in range(ed.COMB_SPACING):
                pt = ed._double(pt)
        for idx in range(16):
            acc = teeth[4]
            for j in range(4):
                acc = ed._add(acc, teeth[j] if (idx >> j) & 1 else ed._neg(teeth[j]))
            for v in ed._niels(acc):
                out += v.to_bytes(32, "little")
    return bytes(out)


def test_comb_table_is_built_from_b():
    assert ed.COMB_TEETH * ed.COMB_COUNT * ed.COMB_SPACING >= 254
    assert ed._COMB_TABLE == _comb_table()
