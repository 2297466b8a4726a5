"""Ed25519 (RFC 8032) signing and verification for the device.

Signatures are byte for byte those of libsodium and verification accepts
exactly what libsodium's crypto_sign_verify_detached accepts (rules in
docs/wire-format.md); docs/ed25519.md says how it is made fast.

    from ln import ed25519
    key = ed25519.SigningKey(seed32)      # scalar, prefix, public key made once
    sig = key.sign(msg)                    # 64 bytes
    ed25519.verify(key.public, msg, sig)   # True
"""

from . import sha512 as _sha512mod

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_sha512 = _sha512mod.sha512

# The curve -x^2 + y^2 = 1 + d x^2 y^2 over GF(P), RFC 8032 section 5.1.
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point B
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
D2 = 2 * D % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_M255 = (1 << 255) - 1
_SEED_BYTES = const(32)
_SIG_BYTES = const(64)

# y coordinates (sign bit ignored) that libsodium refuses in R and in A as
# encodings of small-order points: 0, 1, p-1, the two points of order 8,
# and the non-canonical p and p+1 (docs/wire-format.md, rule 2).
_SMALL_ORDER_Y = (
    0,
    1,
    P - 1,
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
    P,
    P + 1,
)


def _inv(x):
    """1/x mod P by the extended Euclidean algorithm (x not 0 mod P).

    Measured about ten times faster than pow(x, P - 2, P) on the unix and
    wasm ports. Its time depends on x; so does all big-int arithmetic here.
    """
    a = x % P
    b = P
    u = 1
    v = 0
    while a > 1:
        q, r = divmod(b, a)
        b = a
        a = r
        u, v = v - q * u, u
    return u % P


# ---------------------------------------------------------------- points
# Extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z
# (Hisil, Wong, Carter, Dawson 2008, for a = -1). Table points are affine
# "Niels" triples (y + x, y - x, 2dxy).


def _double(p1):
    X, Y, Z, _ = p1
    a = X * X % P
    b = Y * Y % P
    c = 2 * Z * Z % P
    e = (X + Y) * (X + Y) - a - b
    g = b - a
    f = g - c
    h = -a - b
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _add_niels(p1, q):
    X, Y, Z, T = p1
    ypx, ymx, xy2d = q
    a = (Y - X) * ymx % P
    b = (Y + X) * ypx % P
    c = T * xy2d % P
    d = 2 * Z
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _add(p1, p2):
    """Unified addition of two extended points."""
    X1, Y1, Z1, T1 = p1
    X2, Y2, Z2, T2 = p2
    a = (Y1 - X1) * (Y2 - X2) % P
    b = (Y1 + X1) * (Y2 + X2) % P
    c = T1 * D2 % P * T2 % P
    d = 2 * Z1 * Z2 % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _neg(p1):
    return ((-p1[0]) % P, p1[1], p1[2], (-p1[3]) % P)


def _encode(p1):
    zi = _inv(p1[2])
    x = p1[0] * zi % P
    y = p1[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(b):
    """The point b encodes (extended), or None; y must be below P."""
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= _M255
    if y >= P:
        return None
    yy = y * y % P
    u = (yy - 1) % P
    v = (D * yy + 1) % P
    # x = u v^3 (u v^7)^((P-5)/8), RFC 8032 section 5.1.3
    v3 = v * v % P * v % P
    x = u * v3 % P * pow(u * v3 % P * v3 % P * v % P, (P - 5) // 8, P) % P
    vxx = v * x % P * x % P
    if vxx != u:
        if vxx != P - u:
            return None
        x = x * SQRT_M1 % P
    if (x & 1) != sign:
        x = (P - x) % P
    return (x, y, 1, x * y % P)


def _niels(p1):
    zi = _inv(p1[2])
    x = p1[0] * zi % P
    y = p1[1] * zi % P
    return ((y + x) % P, (y - x) % P, D2 * x % P * y % P)


# ---------------------------------------------------------------- [k]B
# A fixed-base comb (Lim and Lee): the scalar's bits are read in _COMBS
# combs of _TEETH teeth, _SPACING bits apart; each comb has a table of the
# 2^_TEETH - 1 sums of its teeth's multiples of B. [k]B then takes
# _SPACING - 1 doublings and _SPACING * _COMBS table additions.
_TEETH = const(4)
_COMBS = const(4)
_SPACING = const(16)  # _TEETH * _COMBS * _SPACING >= 253, the bits of k < L


def _build_comb():
    tables = []
    pt = (BX, BY, 1, BX * BY % P)
    for _c in range(_COMBS):
        teeth = []
        for _j in range(_TEETH):
            teeth.append(pt)
            for _i in range(_SPACING):
                pt = _double(pt)
        sums = [None] * (1 << _TEETH)
        for m in range(1, 1 << _TEETH):
            low = m & -m
            j = 0
            while (1 << j) != low:
                j += 1
            rest = m ^ low
            sums[m] = teeth[j] if rest == 0 else _add(sums[rest], teeth[j])
        tables.append(tuple(_niels(s) for s in sums[1:]))
    return tables


_COMB = _build_comb()


def _base_mul(k):
    """[k]B for 0 <= k < 2^256, in extended coordinates."""
    acc = (0, 1, 1, 0)
    tables = _COMB
    for i in range(_SPACING - 1, -1, -1):
        if i != _SPACING - 1:
            acc = _double(acc)
        for c in range(_COMBS):
            m = 0
            base = i + c * _TEETH * _SPACING
            for j in range(_TEETH):
                m |= ((k >> (base + j * _SPACING)) & 1) << j
            if m:
                acc = _add_niels(acc, tables[c][m - 1])
    return acc


def _var_mul(k, p1):
    """[k]p1 for a variable point: 4-bit fixed window over 16 multiples."""
    mults = [(0, 1, 1, 0), p1]
    for _ in range(14):
        mults.append(_add(mults[-1], p1))
    acc = (0, 1, 1, 0)
    for shift in range(252, -1, -4):
        acc = _double(_double(_double(_double(acc))))
        w = (k >> shift) & 15
        if w:
            acc = _add(acc, mults[w])
    return acc


# ---------------------------------------------------------------- Ed25519
def _expand(seed):
    if not isinstance(seed, (bytes, bytearray, memoryview)) or len(seed) != _SEED_BYTES:
        raise ValueError("an Ed25519 seed is 32 bytes")
    h = _sha512(bytes(seed))
    a = int.from_bytes(h[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    return a, h[32:]


class SigningKey:
    """A device key: the seed's scalar, prefix and public key, made once."""

    def __init__(self, seed):
        a, self._prefix = _expand(seed)
        self._a = a % L
        self.public = _encode(_base_mul(self._a))

    def sign(self, msg):
        """The 64-byte Ed25519 signature of msg (RFC 8032 section 5.1.6)."""
        msg = bytes(msg)
        r = int.from_bytes(_sha512(self._prefix + msg), "little") % L
        rb = _encode(_base_mul(r))
        k = int.from_bytes(_sha512(rb + self.public + msg), "little") % L
        s = (r + k * self._a) % L
        return rb + s.to_bytes(32, "little")


def public_key(seed):
    """The 32-byte public key of a 32-byte seed."""
    a, _ = _expand(seed)
    return _encode(_base_mul(a % L))


def generate_seed(urandom=None):
    """32 random bytes from urandom (os.urandom unless given)."""
    if urandom is None:
        import os

        urandom = os.urandom
    seed = bytes(urandom(_SEED_BYTES))
    if len(seed) != _SEED_BYTES:
        raise ValueError("urandom gave %d bytes, not 32" % len(seed))
    return seed


_last_key = None  # (public bytes, -A): devices verify many acks of one node key


def _neg_public(public):
    global _last_key
    if _last_key is not None and _last_key[0] == public:
        return _last_key[1]
    y = int.from_bytes(public, "little") & _M255
    if y >= P or y in _SMALL_ORDER_Y:
        return None
    a = _decode(public)
    if a is None:
        return None
    a = _neg(a)
    _last_key = (public, a)
    return a


def verify(public, msg, sig):
    """True if sig is a valid signature of msg by public, by libsodium's rules."""
    if len(public) != 32 or len(sig) != _SIG_BYTES:
        return False
    public = bytes(public)
    sig = bytes(sig)
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    if int.from_bytes(sig[:32], "little") & _M255 in _SMALL_ORDER_Y:
        return False
    neg_a = _neg_public(public)
    if neg_a is None:
        return False
    k = int.from_bytes(_sha512(sig[:32] + public + bytes(msg)), "little") % L
    return _encode(_add(_base_mul(s), _var_mul(k, neg_a))) == sig[:32]
