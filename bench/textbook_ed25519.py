"""Ed25519 as RFC 8032 writes it, plainly: the reference for bench/device_sign.py.

Nothing here is tuned. SHA-512 works on whole 64-bit words as FIPS 180-4
reads; points are extended coordinates (RFC 8032 section 5.1.4) and one
addition formula serves for doubling too; scalar multiplication is
double-and-add over every bit; inversion is pow(x, p - 2, p); sign()
derives the scalar, the prefix and the public key again on every call, as
the RFC's sign() does. Runs under MicroPython and CPython.

    import textbook_ed25519 as tb
    sig = tb.sign(seed32, msg)
    assert tb.verify(tb.public_key(seed32), msg, sig)

This file is fixed: the speed-ups of ln.ed25519 are measured against it.
"""

# ---------------------------------------------------------------- SHA-512
# fmt: off
# FIPS 180-4 section 4.2.3: the first 64 bits of the fractional parts of
# the cube roots of the first 80 primes.
_K = [
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC,
    0x3956C25BF348B538, 0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118,
    0xD807AA98A3030242, 0x12835B0145706FBE, 0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2,
    0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235, 0xC19BF174CF692694,
    0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5,
    0x983E5152EE66DFAB, 0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4,
    0xC6E00BF33DA88FC2, 0xD5A79147930AA725, 0x06CA6351E003826F, 0x142929670A0E6E70,
    0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED, 0x53380D139D95B3DF,
    0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30,
    0xD192E819D6EF5218, 0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8,
    0x19A4C116B8D2D0C8, 0x1E376C085141AB53, 0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8,
    0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373, 0x682E6FF3D6B2B8A3,
    0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B,
    0xCA273ECEEA26619C, 0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178,
    0x06F067AA72176FBA, 0x0A637DC5A2C898A6, 0x113F9804BEF90DAE, 0x1B710B35131C471B,
    0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC, 0x431D67C49C100D4C,
    0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
]
# FIPS 180-4 section 5.3.5: the initial hash value.
_H0 = [
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
]
# fmt: on
_M64 = 0xFFFFFFFFFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M64


def sha512(data):
    data = bytes(data)
    n = len(data)
    padded = data + b"\x80" + b"\x00" * ((111 - n) % 128) + (n * 8).to_bytes(16, "big")
    h = list(_H0)
    for off in range(0, len(padded), 128):
        w = [int.from_bytes(padded[off + 8 * t : off + 8 * t + 8], "big") for t in range(16)]
        for t in range(16, 80):
            s0 = _rotr(w[t - 15], 1) ^ _rotr(w[t - 15], 8) ^ (w[t - 15] >> 7)
            s1 = _rotr(w[t - 2], 19) ^ _rotr(w[t - 2], 61) ^ (w[t - 2] >> 6)
            w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M64)
        a, b, c, d, e, f, g, hh = h
        for t in range(80):
            t1 = (
                hh
                + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41))
                + ((e & f) ^ (~e & g))
                + _K[t]
                + w[t]
            ) & _M64
            t2 = (
                (_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))
            ) & _M64
            hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M64, c, b, a, (t1 + t2) & _M64
        v = [a, b, c, d, e, f, g, hh]
        h = [(h[i] + v[i]) & _M64 for i in range(8)]
    return b"".join(x.to_bytes(8, "big") for x in h)


# ---------------------------------------------------------------- the curve
# RFC 8032 section 5.1: -x^2 + y^2 = 1 + d x^2 y^2 over GF(p).
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point


def inv(x):
    return pow(x, P - 2, P)


D = -121665 * inv(121666) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def add(p1, p2):
    """RFC 8032 section 5.1.4 addition in extended coordinates (X, Y, Z, T)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    dd = 2 * z1 * z2 % P
    e = b - a
    f = dd - c
    g = dd + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(k, pt):
    """[k]pt by double-and-add from the least significant bit."""
    acc = IDENTITY
    while k:
        if k & 1:
            acc = add(acc, pt)
        pt = add(pt, pt)
        k >>= 1
    return acc


def encode(pt):
    zi = inv(pt[2])
    x = pt[0] * zi % P
    y = pt[1] * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(b):
    """RFC 8032 section 5.1.3; None if b is not a point's encoding."""
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    xx = u * inv(v) % P
    x = pow(xx, (P + 3) // 8, P)
    if (x * x - xx) % P:
        x = x * SQRT_M1 % P
        if (x * x - xx) % P:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


B = decode((4 * inv(5) % P).to_bytes(32, "little"))


# ---------------------------------------------------------------- Ed25519
def expand(seed):
    """RFC 8032 section 5.1.5: the clamped scalar and the prefix."""
    if len(seed) != 32:
        raise ValueError("seed must be 32 bytes")
    h = sha512(seed)
    s = int.from_bytes(h[:32], "little")
    s = (s & ((1 << 254) - 8)) | (1 << 254)
    return s, h[32:]


def hash_int(data):
    return int.from_bytes(sha512(data), "little") % L


def public_key(seed):
    s, _ = expand(seed)
    return encode(mul(s, B))


def sign(seed, msg):
    """RFC 8032 section 5.1.6, everything derived again on each call."""
    s, prefix = expand(seed)
    a = encode(mul(s, B))
    r = hash_int(prefix + msg)
    rb = encode(mul(r, B))
    k = hash_int(rb + a + msg)
    return rb + ((r + k * s) % L).to_bytes(32, "little")


def verify(public, msg, sig):
    """RFC 8032 section 5.1.7, the cofactored check [8][S]B == [8]R + [8][k]A."""
    if len(public) != 32 or len(sig) != 64:
        return False
    a = decode(public)
    r = decode(sig[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    k = hash_int(sig[:32] + public + msg)
    left = mul(8, mul(s, B))
    right = mul(8, add(r, mul(k, a)))
    x1, y1, z1, _ = left
    x2, y2, z2, _ = right
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0
