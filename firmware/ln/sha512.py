"""SHA-512 (FIPS 180-4) for MicroPython, which has only SHA-256 in C.

Ed25519 (ln.ed25519) hashes with it; the envelope keeps what it hashes
to three blocks per transaction (docs/wire-format.md).

    from ln.sha512 import sha512, SHA512
    sha512(b"abc")            # 64 bytes
    h = SHA512(); h.update(b"a"); h.update(b"bc"); h.digest()

Two ways to do the same arithmetic, chosen once at import (select() to
change; both give the same digests): on a port whose small ints hold 62
bits (64-bit unix) each 64-bit word is kept as two 32-bit halves, which
stay small ints, about 3x faster than one big int per word. Where small
ints hold only 30 bits (the 32-bit boards, the wasm port) half the halves
are heap ints anyway, and one 64-bit int per word measured faster.
"""

import sys
from binascii import unhexlify

# FIPS 180-4 section 4.2.3: first 64 bits of the fractional parts of the
# cube roots of the first 80 primes, big-endian, one after another.
_K = unhexlify(
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc"
    "3956c25bf348b53859f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118"
    "d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e2"
    "72be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694"
    "e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5"
    "983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4"
    "c6e00bf33da88fc2d5a79147930aa72506ca6351e003826f142929670a0e6e70"
    "27b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df"
    "650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30"
    "d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8"
    "19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8"
    "391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373682e6ff3d6b2b8a3"
    "748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532b"
    "ca273eceea26619cd186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed178"
    "06f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b"
    "28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c"
    "4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
)
# FIPS 180-4 section 5.3.5: the initial hash value.
_H0 = unhexlify(
    "6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1"
    "510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179"
)
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def _words(b, size):
    return tuple(int.from_bytes(b[i : i + size], "big") for i in range(0, len(b), size))


# ---------------------------------------------------------------- one int per word
def _compress64(h, block, off, K):
    M = _M64
    w = [0] * 80
    for i in range(16):
        w[i] = int.from_bytes(block[off + 8 * i : off + 8 * i + 8], "big")
    for t in range(16, 80):
        x = w[t - 15]
        x |= x << 64  # rotations become shifts of the doubled word
        y = w[t - 2]
        y |= y << 64
        w[t] = (
            w[t - 16]
            + w[t - 7]
            + (((x >> 1) ^ (x >> 8)) & M ^ ((x & M) >> 7))
            + (((y >> 19) ^ (y >> 61)) & M ^ ((y & M) >> 6))
        ) & M
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        ee = e | (e << 64)
        t1 = hh + (((ee >> 14) ^ (ee >> 18) ^ (ee >> 41)) & M) + (g ^ (e & (f ^ g))) + K[t] + w[t]
        aa = a | (a << 64)
        t2 = (((aa >> 28) ^ (aa >> 34) ^ (aa >> 39)) & M) + ((a & b) | (c & (a | b)))
        hh = g
        g = f
        f = e
        e = (d + t1) & M
        d = c
        c = b
        b = a
        a = (t1 + t2) & M
    v = (a, b, c, d, e, f, g, hh)
    for i in range(8):
        h[i] = (h[i] + v[i]) & M


# ---------------------------------------------------------------- two halves per word
def _compress32(hs, block, off, K):
    M = _M32
    KH, KL = K
    wh = [0] * 80
    wl = [0] * 80
    for i in range(16):
        j = off + 8 * i
        wh[i] = int.from_bytes(block[j : j + 4], "big")
        wl[i] = int.from_bytes(block[j + 4 : j + 8], "big")
    # No left shift here takes a half past 62 bits, so nothing leaves the
    # small ints on a 64-bit port (rotr 1 moves one bit by hand).
    for t in range(16, 80):
        xh = wh[t - 15]
        xl = wl[t - 15]
        s0h = ((xh >> 1) | ((xl & 1) << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7)
        s0l = ((xl >> 1) | ((xh & 1) << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))
        xh = wh[t - 2]
        xl = wl[t - 2]
        s1h = ((xh >> 19) | (xl << 13)) ^ ((xl >> 29) | (xh << 3)) ^ (xh >> 6)
        s1l = ((xl >> 19) | (xh << 13)) ^ ((xh >> 29) | (xl << 3)) ^ ((xl >> 6) | (xh << 26))
        lo = wl[t - 16] + (s0l & M) + wl[t - 7] + (s1l & M)
        wh[t] = (wh[t - 16] + (s0h & M) + wh[t - 7] + (s1h & M) + (lo >> 32)) & M
        wl[t] = lo & M
    ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl = hs
    for t in range(80):
        # Sigma1(e): rotr 14, 18, 41
        s1h = ((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))
        s1l = ((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))
        t1l = hl + (s1l & M) + (gl ^ (el & (fl ^ gl))) + KL[t] + wl[t]
        t1h = hh + (s1h & M) + (gh ^ (eh & (fh ^ gh))) + KH[t] + wh[t] + (t1l >> 32)
        # Sigma0(a): rotr 28, 34, 39
        s0h = ((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))
        s0l = ((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))
        t2l = (s0l & M) + ((al & bl) | (cl & (al | bl)))
        t2h = (s0h & M) + ((ah & bh) | (ch & (ah | bh)))
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        t1l &= M
        t1h &= M
        el = dl + t1l
        eh = (dh + t1h + (el >> 32)) & M
        el &= M
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        al = t1l + t2l
        ah = (t1h + t2h + (al >> 32)) & M
        al &= M
    v = (ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl)
    for i in range(0, 16, 2):
        lo = hs[i + 1] + v[i + 1]
        hs[i] = (hs[i] + v[i] + (lo >> 32)) & M
        hs[i + 1] = lo & M


_compress = None
_kconst = None
_iv = None
_size = 8
HALVES = False


def select(halves):
    """Use two 32-bit halves per word (True) or one int (False)."""
    global _compress, _kconst, _iv, _size, HALVES
    HALVES = bool(halves)
    if HALVES:
        _compress = _compress32
        k = _words(_K, 4)
        _kconst = (
            tuple(k[i] for i in range(0, 160, 2)),
            tuple(k[i] for i in range(1, 160, 2)),
        )
        _size = 4
    else:
        _compress = _compress64
        _kconst = _words(_K, 8)
        _size = 8
    _iv = _words(_H0, _size)


# sys.maxsize is the machine word: 2^63 - 1 where small ints hold 62 bits.
select(sys.maxsize > _M32)


class SHA512:
    """Incremental SHA-512: update() any number of times, then digest()."""

    def __init__(self, data=None):
        self._h = list(_iv)
        self._size = _size
        self._buf = b""
        self._n = 0
        if data:
            self.update(data)

    def update(self, data):
        n = len(data)
        self._n += n
        buf = self._buf
        if buf:
            take = 128 - len(buf)
            buf += bytes(data[:take])
            if len(buf) < 128:
                self._buf = buf
                return
            _compress(self._h, buf, 0, _kconst)
            data = memoryview(data)[take:]
            n -= take
        end = n - n % 128
        for off in range(0, end, 128):
            _compress(self._h, data, off, _kconst)
        self._buf = bytes(data[end:])

    def digest(self):
        """The digest of what was given so far; more update() may follow."""
        h = list(self._h)
        n = self._n
        tail = self._buf + b"\x80" + bytes((111 - n) % 128) + (n * 8).to_bytes(16, "big")
        for off in range(0, len(tail), 128):
            _compress(h, tail, off, _kconst)
        size = self._size
        return b"".join(x.to_bytes(size, "big") for x in h)


def sha512(data):
    """SHA-512 of data (bytes, bytearray or memoryview) as 64 bytes."""
    return SHA512(data).digest()
