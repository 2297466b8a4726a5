# lightnode.bloom on the device: golden filter bytes (the same under CPython,
# the unix port and the 32-bit wasm port), membership, the layout's bounds,
# and every refusal of verify_filter.
import hashlib
from binascii import hexlify, unhexlify

from lightnode.bloom import filter as bf
from lightnode.bloom import signed
from lightnode.bloom.filter import BloomFilter, FilterError
from ln import cose, ed25519, wire

try:
    from lightnode import nodewire  # CPython: the SDK's node-only wire facts
except ImportError:
    import nodewire  # MicroPython: tests/test_device_suites.py puts a copy on the path

PORTS = ("unix", "wasm")

SEGMENT = "feeder-7"
EPOCH = 7
NOT_AFTER = 1767225600  # 2026-01-01T00:00:00Z
FILTER_SEED = bytes(range(32))
ACK_SEED = bytes(range(1, 33))
FILTER_KID = b"node-1/filter"
ACK_KID = b"node-1/ack"

# bf.optimal(5, 0.01) over _devices(5), epoch 7 of feeder-7
GOLDEN_SMALL = (
    "010700000030000000050000000000000007000000006955b900"  # header to not-after
    "352b4080b334647bfa8b36958335b777"  # salt
    "662a3a79a9e9"  # 48 bits
)
# SHA-256 of the bytes of bf.optimal(300, 1e-3) over _devices(300)
GOLDEN_300 = "39addc9d56fa8510406a02624bc62bf75774612e3f0a3ffe6ecefab3d9f29b52"


def _devices(n):
    # one at a time: a list of 300 pairs is large at a board's heap budget
    for i in range(n):
        yield b"dev-%d" % i, hashlib.sha256(b"pk-%d" % i).digest()


def _filter(n, p, epoch=EPOCH, not_after=NOT_AFTER):
    bits, hashes = bf.optimal(n, p)
    f = BloomFilter(bits, hashes, epoch, not_after, salt=bf.epoch_salt(SEGMENT, epoch))
    for d, k in _devices(n):
        f.add(d, k)
    return f


def _reason(fn, *args):
    try:
        fn(*args)
    except FilterError as e:
        assert isinstance(e, ValueError) and e.reason in bf.REASONS, e.reason
        return e.reason
    return None


_keys = {}


def _key(seed):
    if seed not in _keys:
        _keys[seed] = ed25519.SigningKey(seed)
    return _keys[seed]


def _node_keys():
    return {
        FILTER_KID: (_key(FILTER_SEED).public, (wire.ROLE_FILTER,)),
        ACK_KID: (_key(ACK_SEED).public, (wire.ROLE_ACK,)),
    }


def _sign(payload, seed=FILTER_SEED, kid=FILTER_KID, cty=wire.CTY_FILTER):
    header = {wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: cty, wire.H_KID: kid}
    return cose.sign1(header, {}, payload, _key(seed))


def test_optimal_sizes():
    assert bf.optimal(10000, 1e-4) == (191702, 13)
    assert bf.optimal(5, 0.01) == (48, 7)
    assert bf.optimal(300, 1e-3) == (4314, 10)
    assert bf.optimal(1, 0.5) == (8, 6)
    for bad in ((0, 0.1), (10, 0.0), (10, 1.0), (10**9, 1e-9)):
        try:
            bf.optimal(*bad)
            raise AssertionError("optimal%r accepted" % (bad,))
        except ValueError:
            pass


def test_salt_and_key():
    salt = bf.epoch_salt(SEGMENT, EPOCH)
    h = hashlib.sha256(b"lightnode-filter\x00feeder-7\x00\x00\x00\x00\x00\x00\x00\x00\x07")
    assert salt == h.digest()[:16]
    assert bf.epoch_salt(SEGMENT, EPOCH + 1) != salt
    d, k = next(_devices(1))
    assert bf.member_key(salt, d, k) == hashlib.sha256(salt + b"\x05" + d + k).digest()
    # indices: h1 = (w0 >> 2) mod m, h2 = 1 + (w1 >> 2) mod (m - 1), then + h2 mod m
    digest = bytes((0xFF,) * 8) + bytes(24)
    x = 0xFFFFFFFF >> 2
    assert bf.indices(digest, 1000, 3) == [x % 1000, (x % 1000 + 1 + x % 999) % 1000,
                                            (x % 1000 + 2 * (1 + x % 999)) % 1000]


def test_golden_small():
    f = _filter(5, 0.01)
    data = f.to_bytes()
    assert hexlify(data).decode() == GOLDEN_SMALL
    assert len(data) == bf.HEADER_BYTES + 6 == f.size()
    assert BloomFilter.from_bytes(data).to_bytes() == data
    assert BloomFilter.from_bytes(bytearray(data)) == f


def test_golden_300():
    f = _filter(300, 1e-3)
    assert hexlify(hashlib.sha256(f.to_bytes()).digest()).decode() == GOLDEN_300
    assert f.items == 300


def test_membership():
    f = _filter(300, 1e-3)
    for d, k in _devices(300):
        assert (d, k) in f and f.might_contain(d, k)
    outsiders = 0
    for i in range(2000):
        if f.might_contain(b"stranger-%d" % i, hashlib.sha256(b"%d" % i).digest()):
            outsiders += 1
    assert outsiders < 20  # 1e-3 expected: about 2
    d, k = next(_devices(1))
    assert not _filter(300, 1e-3, epoch=EPOCH + 1).to_bytes() == f.to_bytes()
    for bad in ((b"", k), (b"x" * 33, k), (d, k[:31])):
        try:
            f.add(*bad)
            raise AssertionError("add%r accepted" % (bad,))
        except ValueError:
            pass


def test_from_bytes_bounds():
    good = unhexlify(GOLDEN_SMALL)
    assert _reason(BloomFilter.from_bytes, good) is None
    for n in range(len(good)):  # every truncation
        assert _reason(BloomFilter.from_bytes, good[:n]) == bf.R_MALFORMED
    assert _reason(BloomFilter.from_bytes, good + b"\x00") == bf.R_MALFORMED
    assert _reason(BloomFilter.from_bytes, b"\x02" + good[1:]) == bf.R_VERSION

    def patched(at, value):
        b = bytearray(good)
        b[at:at + len(value)] = value
        return bytes(b)

    assert _reason(BloomFilter.from_bytes, patched(1, b"\x00")) == bf.R_MALFORMED  # 0 hashes
    assert _reason(BloomFilter.from_bytes, patched(1, b"\x21")) == bf.R_MALFORMED  # 33 hashes
    assert _reason(BloomFilter.from_bytes, patched(2, b"\x00\x00\x00\x07")) == bf.R_MALFORMED
    assert _reason(BloomFilter.from_bytes, patched(2, b"\x01\x00\x00\x01")) == bf.R_MALFORMED
    assert _reason(BloomFilter.from_bytes, patched(2, b"\xff\xff\xff\xff")) == bf.R_MALFORMED
    # 47 bits in 6 bytes: the top bit of the last byte is spare and must be 0
    odd = patched(2, b"\x00\x00\x00\x2f")
    last = len(odd) - 1
    ok = odd[:last] + bytes((odd[last] & 0x7F,))
    assert _reason(BloomFilter.from_bytes, ok) is None
    assert _reason(BloomFilter.from_bytes, ok[:last] + bytes((ok[last] | 0x80,))) == bf.R_MALFORMED
    assert _reason(BloomFilter.from_bytes, good, len(good) - 1) == bf.R_OVERSIZED
    try:
        BloomFilter.from_bytes("text")
        raise AssertionError("text accepted")
    except TypeError:
        pass


def test_one_byte_at_a_time_prefixes():
    # every prefix of a good filter is refused; only the whole one is taken
    good = unhexlify(GOLDEN_SMALL)
    taken = [n for n in range(len(good) + 1) if _reason(BloomFilter.from_bytes, good[:n]) is None]
    assert taken == [len(good)]


def test_signed_golden_and_accepted():
    f = _filter(5, 0.01)
    data = _sign(f.to_bytes())
    assert data[:2] == b"\xd2\x84"
    assert signed.protected_header(FILTER_KID) == cose.decode1(data).protected_bytes
    g = signed.verify_filter(data, _node_keys(), -1, NOT_AFTER, 4096)
    assert g == f and g.epoch == EPOCH
    assert signed.verify_filter(data, _node_keys(), EPOCH, NOT_AFTER - 1, len(data)) == f


def test_refusals():
    f = _filter(5, 0.01)
    good = _sign(f.to_bytes())
    keys = _node_keys()

    def reason(data, held=-1, now=NOT_AFTER, limit=4096, node_keys=keys):
        return _reason(signed.verify_filter, data, node_keys, held, now, limit)

    assert reason(good) is None
    # tampered: one bit of the filter, the epoch in the header, the signature
    for at in (len(good) - 70, len(good) - 80, len(good) - 1):
        bad = bytearray(good)
        bad[at] ^= 1
        assert reason(bytes(bad)) == bf.R_SIGNATURE, at
    # an old epoch, an expired one, over the board's size
    assert reason(good, held=EPOCH + 1) == bf.R_EPOCH
    assert reason(good, now=NOT_AFTER + 1) == bf.R_EXPIRED
    assert reason(good, limit=len(good) - 1) == bf.R_OVERSIZED
    # a node key without the filter role; a key the board does not know
    assert reason(_sign(f.to_bytes(), ACK_SEED, ACK_KID)) == bf.R_ROLE
    assert reason(_sign(f.to_bytes(), ACK_SEED, b"someone")) == bf.R_SIGNER
    # the ack key claiming the filter key's kid: the signature fails
    assert reason(_sign(f.to_bytes(), ACK_SEED, FILTER_KID)) == bf.R_SIGNATURE
    # an ack-signed object (content type) by the filter key itself
    assert reason(_sign(f.to_bytes(), cty=wire.CTY_ACK)) == bf.R_CONTENT_TYPE
    # a signed filter whose payload is not a filter
    assert reason(_sign(b"\x01" + bytes(10))) == bf.R_MALFORMED
    # not COSE at all, untagged, other headers
    assert reason(b"\xff") == bf.R_MALFORMED
    assert reason(good[1:]) == bf.R_TAG
    header = {wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: wire.CTY_FILTER, wire.H_KID: FILTER_KID, 5: b""}
    assert reason(cose.sign1(header, {}, f.to_bytes(), _key(FILTER_SEED))) == bf.R_PROTECTED
    header = {wire.H_ALG: wire.ALG_EDDSA, wire.H_CTY: wire.CTY_FILTER, wire.H_KID: FILTER_KID}
    assert reason(cose.sign1(header, {4: b"x"}, f.to_bytes(), _key(FILTER_SEED))) == bf.R_PROTECTED
    header = {wire.H_ALG: nodewire.ALG_ED448, wire.H_CTY: wire.CTY_FILTER, wire.H_KID: FILTER_KID}
    assert reason(cose.sign1(header, {}, f.to_bytes(), _key(FILTER_SEED))) == bf.R_ALG
