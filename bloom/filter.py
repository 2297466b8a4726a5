"""The device-authentication Bloom filter: one byte layout under CPython and MicroPython.

A filter holds, for each registered, unrevoked device, the key
K = SHA-256(salt || len(device id) || device id || public key), and answers
"maybe registered" or "certainly not". docs/bloom.md is the specification;
in short:

* layout: a 42-byte header (format version, hash count, bit count, item
  count, epoch, not-after, 16-byte salt), big-endian, then the bits,
  bit ``i`` at byte ``i >> 3``, mask ``1 << (i & 7)``; unused bits of the
  last byte are zero.
* indices: x1, x2 = the first two big-endian 32-bit words of K, each
  shifted right by 2 (30 bits: a small int on every port); h1 = x1 mod m,
  h2 = 1 + x2 mod (m - 1); index i = (h1 + i * h2) mod m, for i < k,
  computed by adding h2 and subtracting m, so every intermediate value
  stays below 2m <= 2**25 (m need not be a power of two).
* salt: SHA-256("lightnode-filter" || 0 || segment || 0 || epoch as 8
  bytes big-endian), first 16 bytes (``epoch_salt``), carried in the header.

    from lightnode.bloom import filter as bf
    bits, hashes = bf.optimal(100, 1e-4)
    f = bf.BloomFilter(bits, hashes, epoch=7, not_after=1767225600,
                       salt=bf.epoch_salt("feeder-7", 7))
    f.add(b"dev-1", public_key)
    (b"dev-1", public_key) in f                 # True
    g = bf.BloomFilter.from_bytes(f.to_bytes())  # FilterError if malformed
"""

import hashlib
import math
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


FORMAT_VERSION = const(1)
HEADER = ">BBIIQQ16s"  # version, hashes, bits, items, epoch, not-after, salt
HEADER_BYTES = const(42)
SALT_BYTES = const(16)
MIN_BITS = const(8)
MAX_BITS = const(16777216)  # 2**24: indices below 2**25 stay small ints on 32-bit ports
MAX_HASHES = const(32)
MAX_DEVICE_ID = const(32)  # as ln.wire.MAX_DEVICE_ID: a device id the wire can carry
KEY_BYTES = const(32)  # an Ed25519 public key
_U64 = 1 << 64
_SALT_DOMAIN = b"lightnode-filter"

# Reasons a filter is refused (FilterError.reason). Where ln.wire has the
# same reason, its spelling is used.
R_MALFORMED = "malformed"
R_OVERSIZED = "oversized"
R_VERSION = "unsupported-version"
R_UNSUPPORTED = "unsupported"  # CBOR outside the wire format's subset
R_NON_CANONICAL = "non-canonical"
R_STRUCTURE = "structure"
R_TAG = "bad-tag"
R_ALG = "unsupported-alg"
R_PROTECTED = "protected-header"
R_CONTENT_TYPE = "content-type"  # a signed object of another kind
R_SIGNER = "unknown-signer"  # kid not among the node keys
R_ROLE = "not-filter-role"  # a node key, but without the filter role
R_SIGNATURE = "bad-signature"
R_EPOCH = "old-epoch"
R_EXPIRED = "expired"
REASONS = (
    R_MALFORMED,
    R_OVERSIZED,
    R_VERSION,
    R_UNSUPPORTED,
    R_NON_CANONICAL,
    R_STRUCTURE,
    R_TAG,
    R_ALG,
    R_PROTECTED,
    R_CONTENT_TYPE,
    R_SIGNER,
    R_ROLE,
    R_SIGNATURE,
    R_EPOCH,
    R_EXPIRED,
)


class FilterError(ValueError):
    """A filter (or a signed filter) from outside refused, for ``reason`` (one of REASONS)."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


def optimal(n, p):
    """``(bits, hashes)`` for ``n`` items at false-positive rate ``p``.

    bits = ceil(-n ln p / (ln 2)^2), hashes = round(bits / n * ln 2), at
    least 1 and at most MAX_HASHES; bits at least MIN_BITS. ValueError if
    the filter would exceed MAX_BITS.
    """
    if type(n) is not int or n < 1:
        raise ValueError("n: a positive integer expected")
    if not 0.0 < p < 1.0:
        raise ValueError("p: a rate strictly between 0 and 1 expected")
    ln2 = math.log(2.0)
    bits = int(math.ceil(-n * math.log(p) / (ln2 * ln2)))
    bits = max(bits, MIN_BITS)
    if bits > MAX_BITS:
        raise ValueError("%d items at p=%r need %d bits, over %d" % (n, p, bits, MAX_BITS))
    hashes = int(bits * ln2 / n + 0.5)
    return bits, min(max(hashes, 1), MAX_HASHES)


def epoch_salt(segment, epoch):
    """The salt of ``segment``'s filter for ``epoch``: SHA-256 of the domain, segment and epoch, 16 bytes."""
    if isinstance(segment, str):
        segment = segment.encode()
    if type(epoch) is not int or not 0 <= epoch < _U64:
        raise ValueError("epoch: an integer in 0..2**64-1 expected")
    h = hashlib.sha256(_SALT_DOMAIN)
    h.update(b"\x00")
    h.update(segment)
    h.update(b"\x00")
    h.update(struct.pack(">Q", epoch))
    return h.digest()[:SALT_BYTES]


def _check_member(device_id, public_key):
    if not isinstance(device_id, (bytes, bytearray)) or not isinstance(
        public_key, (bytes, bytearray)
    ):
        raise TypeError("device id and public key: bytes expected")
    if not 1 <= len(device_id) <= MAX_DEVICE_ID:
        raise ValueError("device id: %d bytes, must be 1-%d" % (len(device_id), MAX_DEVICE_ID))
    if len(public_key) != KEY_BYTES:
        raise ValueError("public key: %d bytes, an Ed25519 key has 32" % len(public_key))


def member_key(salt, device_id, public_key):
    """K = SHA-256(salt || len(device id) as one byte || device id || public key)."""
    _check_member(device_id, public_key)
    h = hashlib.sha256(salt)
    h.update(bytes((len(device_id),)))
    h.update(device_id)
    h.update(public_key)
    return h.digest()


def _start(d, m):
    """``(h1, h2)`` of key digest ``d`` for ``m`` bits, in 30-bit small ints throughout."""
    x1 = (d[0] << 22) | (d[1] << 14) | (d[2] << 6) | (d[3] >> 2)
    x2 = (d[4] << 22) | (d[5] << 14) | (d[6] << 6) | (d[7] >> 2)
    return x1 % m, 1 + x2 % (m - 1)


def indices(digest, bits, hashes):
    """The ``hashes`` bit indices of key ``digest`` in a filter of ``bits`` bits, in probe order."""
    i, step = _start(digest, bits)
    out = []
    for _ in range(hashes):
        out.append(i)
        i += step
        if i >= bits:
            i -= bits
    return out


class BloomFilter:
    """A Bloom filter of ``bits`` bits and ``hashes`` probes, for one epoch of one segment.

    The bit array is allocated once, here, at its final size.
    """

    def __init__(self, bits, hashes, epoch, not_after, items=0, salt=None, _array=None):
        for name, v, lo, hi in (
            ("bits", bits, MIN_BITS, MAX_BITS),
            ("hashes", hashes, 1, MAX_HASHES),
            ("epoch", epoch, 0, _U64 - 1),
            ("not_after", not_after, 0, _U64 - 1),
            ("items", items, 0, 0xFFFFFFFF),
        ):
            if type(v) is not int:
                raise TypeError("%s: an integer expected" % name)
            if not lo <= v <= hi:
                raise ValueError("%s: %d is outside %d..%d" % (name, v, lo, hi))
        if salt is None:
            salt = epoch_salt(b"", epoch)
        if not isinstance(salt, (bytes, bytearray)) or len(salt) != SALT_BYTES:
            raise ValueError("salt: %d bytes expected" % SALT_BYTES)
        self.bits = bits
        self.hashes = hashes
        self.epoch = epoch
        self.not_after = not_after
        self.items = items
        self.salt = bytes(salt)
        self.array = bytearray((bits + 7) >> 3) if _array is None else _array
        self._bits = memoryview(self.array)

    def __repr__(self):
        return "BloomFilter(bits=%d, hashes=%d, epoch=%d, not_after=%d, items=%d)" % (
            self.bits,
            self.hashes,
            self.epoch,
            self.not_after,
            self.items,
        )

    def __eq__(self, other):
        return isinstance(other, BloomFilter) and self.to_bytes() == other.to_bytes()

    def key(self, device_id, public_key):
        """This filter's key K of a device (SHA-256, 32 bytes)."""
        return member_key(self.salt, device_id, public_key)

    def add(self, device_id, public_key):
        """Put a device in; counts it as one item."""
        if self.items >= 0xFFFFFFFF:
            raise ValueError("the item count is full")
        self.add_key(self.key(device_id, public_key))
        self.items += 1

    def add_key(self, digest):
        """Set the bits of key ``digest`` (the item count is the caller's)."""
        m = self.bits
        b = self._bits
        i, step = _start(digest, m)
        for _ in range(self.hashes):
            b[i >> 3] |= 1 << (i & 7)
            i += step
            if i >= m:
                i -= m

    def might_contain(self, device_id, public_key):
        """False: certainly not in the filter. True: in it, or a false positive."""
        return self.has_key(self.key(device_id, public_key))

    def has_key(self, digest):
        m = self.bits
        b = self._bits
        i, step = _start(digest, m)
        for _ in range(self.hashes):
            if not b[i >> 3] & (1 << (i & 7)):
                return False
            i += step
            if i >= m:
                i -= m
        return True

    def __contains__(self, member):
        device_id, public_key = member
        return self.might_contain(device_id, public_key)

    def set_bits(self):
        """How many bits are set (the fill, for the false-positive rate this filter has)."""
        n = 0
        for byte in self.array:
            while byte:
                byte &= byte - 1
                n += 1
        return n

    def size(self):
        """Bytes of ``to_bytes()``."""
        return HEADER_BYTES + len(self.array)

    def to_bytes(self):
        """The one layout: header, then the bits."""
        out = bytearray(HEADER_BYTES + len(self.array))
        struct.pack_into(
            HEADER,
            out,
            0,
            FORMAT_VERSION,
            self.hashes,
            self.bits,
            self.items,
            self.epoch,
            self.not_after,
            self.salt,
        )
        out[HEADER_BYTES:] = self.array
        return bytes(out)

    @classmethod
    def from_bytes(cls, data, max_bytes=None):
        """A filter from its bytes, every field bounds-checked, or ``FilterError``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data: bytes expected, not %s" % type(data).__name__)
        n = len(data)
        if max_bytes is not None and n > max_bytes:
            raise FilterError(R_OVERSIZED, "%d bytes, limit %d" % (n, max_bytes))
        return cls(*read_header(data), _array=bytearray(memoryview(data)[HEADER_BYTES:]))


def read_header(data):
    """``(bits, hashes, epoch, not_after, items, salt)`` of a filter's bytes, checked, or ``FilterError``.

    Checks the length against the bit count and that the unused bits of the
    last byte are zero, without copying the bits.
    """
    n = len(data)
    if n < HEADER_BYTES:
        raise FilterError(R_MALFORMED, "%d bytes, shorter than the %d-byte header" % (n, HEADER_BYTES))
    version, hashes, bits, items, epoch, not_after, salt = struct.unpack_from(HEADER, data, 0)
    if version != FORMAT_VERSION:
        raise FilterError(R_VERSION, "format version %d" % version)
    if not 1 <= hashes <= MAX_HASHES:
        raise FilterError(R_MALFORMED, "%d hashes, must be 1-%d" % (hashes, MAX_HASHES))
    if not MIN_BITS <= bits <= MAX_BITS:
        raise FilterError(R_MALFORMED, "%d bits, must be %d-%d" % (bits, MIN_BITS, MAX_BITS))
    if n != HEADER_BYTES + ((bits + 7) >> 3):
        raise FilterError(
            R_MALFORMED, "%d bytes, %d bits need %d" % (n, bits, HEADER_BYTES + ((bits + 7) >> 3))
        )
    spare = -bits & 7
    if spare and data[n - 1] >> (8 - spare):
        raise FilterError(R_MALFORMED, "bits set past bit %d" % (bits - 1))
    return bits, hashes, epoch, not_after, items, salt
