# ln.cbor: RFC 8949 Appendix A vectors (tests/data/cbor, from cbor/test-vectors),
# the hard limits, and the refusal reasons of docs/wire-format.md.
import _vectors
from ln import cbor, wire
from ln.errors import CBORError, WireError

PORTS = ("unix", "wasm")
# The limit tests hold 16 KB documents, their parts and 2048-entry lists
# (8 bytes an entry on the 64-bit unix port) at once.
HEAP_KB = 256


h = _vectors.unhex

# Appendix A items outside the subset, and why each is refused.
_REFUSED = {
    # two-byte simple value below 32: not well-formed under RFC 8949 section 3.3
    # (RFC 7049 listed it; RFC 8949 made it invalid)
    "f818": wire.R_MALFORMED,
    "f7": wire.R_UNSUPPORTED,  # undefined
    "f0": wire.R_UNSUPPORTED,  # simple(16)
    "f8ff": wire.R_UNSUPPORTED,  # simple(255)
}
# Entries whose decoded value JSON cannot hold (byte strings, integer map keys).
_DIAGNOSTIC = {"a201020304": {1: 2, 3: 4}, "40": b"", "4401020304": b"\x01\x02\x03\x04"}


def _reason(data, **kw):
    try:
        cbor.loads(data, **kw)
    except CBORError as e:
        assert isinstance(e, ValueError) and isinstance(e, WireError)
        assert e.reason in wire.REASONS
        return e.reason
    return None


def _expected(entry):
    x = entry["hex"]
    if x in _REFUSED:
        return "refuse", _REFUSED[x]
    if x[:2] in ("f9", "fa", "fb"):
        return "refuse", wire.R_UNSUPPORTED  # floating point
    if x[0] in "cd":
        return "refuse", wire.R_UNSUPPORTED  # tags (none allowed here)
    if not entry["roundtrip"]:
        return "refuse", wire.R_UNSUPPORTED  # indefinite lengths
    if x in _DIAGNOSTIC:
        return "value", _DIAGNOSTIC[x]
    return "value", entry["decoded"]


def test_appendix_a():
    ok = refused = 0
    for entry in _vectors.load("cbor/appendix_a.json"):
        data = h(entry["hex"])
        what, expect = _expected(entry)
        if what == "value":
            got = cbor.loads(data)
            assert got == expect, (entry["hex"], got)
            assert cbor.dumps(expect) == data, entry["hex"]
            ok += 1
        else:
            assert _reason(data) == expect, (entry["hex"], _reason(data), expect)
            refused += 1
    # 37 items in the subset, the other 45 (floats, tags, indefinite, simple) refused
    assert ok == 37 and refused == 45, (ok, refused)


def test_appendix_a_tags_where_allowed():
    # With a tag allowed at the top, tagged items decode as Tag and re-encode.
    for x in (
        "c074323031332d30332d32315432303a30343a30305a",
        "c11a514b67b0",
        "d74401020304",
        "d818456449455446",
        "c249010000000000000000",
    ):
        obj = cbor.loads(h(x), tag_depth=0)
        assert isinstance(obj, cbor.Tag)
        assert cbor.dumps(obj) == h(x)
    assert cbor.loads(h("d74401020304"), tag_depth=0) == cbor.Tag(23, b"\x01\x02\x03\x04")
    assert _reason(h("c1fb41d452d9ec200000"), tag_depth=0) == wire.R_UNSUPPORTED  # float inside
    # a tag only at the depth allowed, and never two deep
    assert _reason(h("d2d280"), tag_depth=0) == wire.R_UNSUPPORTED
    assert _reason(h("81d280"), tag_depth=0) == wire.R_UNSUPPORTED
    assert cbor.loads(h("81d280"), tag_depth=1) == [cbor.Tag(18, [])]


def test_integer_edges():
    for v, x in (
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (0xFFFFFFFF, "1affffffff"),
        (0x100000000, "1b0000000100000000"),
        ((1 << 64) - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        (-256, "38ff"),
        (-257, "390100"),
        (-(1 << 64), "3bffffffffffffffff"),
        ((1 << 63) - 1, "1b7fffffffffffffff"),
    ):
        assert cbor.dumps(v) == h(x), (v, cbor.dumps(v))
        assert cbor.loads(h(x)) == v


def test_dumps_subset():
    assert cbor.dumps((1, 2)) == cbor.dumps([1, 2]) == h("820102")
    assert cbor.dumps(bytearray(b"ab")) == cbor.dumps(b"ab") == h("426162")
    assert cbor.dumps(memoryview(b"ab")) == h("426162")
    assert (
        cbor.dumps(None) == h("f6") and cbor.dumps(True) == h("f5") and cbor.dumps(False) == h("f4")
    )
    assert cbor.dumps("\u00fc") == h("62c3bc")
    assert cbor.dumps(cbor.Tag(18, [])) == h("d280")
    # bytewise order of the encoded keys (RFC 8949 4.2.1), not shortest-first
    assert cbor.dumps({-1: 0, 24: 0, 23: 0}) == h("a317001818002000")
    assert cbor.dumps({"a": 1, 100: 2}) == h("a2186402616101")
    assert cbor.dumps({259: 60, 258: -16, 4: b"k", 1: -8}) == h("a4012704416b1901022f190103183c")


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError("%s not raised" % exc.__name__)


def test_dumps_refuses_outside_subset():
    _raises(TypeError, cbor.dumps, 1.5)
    _raises(TypeError, cbor.dumps, {1, 2})
    _raises(TypeError, cbor.dumps, object())
    _raises(TypeError, cbor.dumps, {b"k": 1})
    _raises(TypeError, cbor.dumps, {True: 1})
    _raises(TypeError, cbor.dumps, {None: 1})
    _raises(TypeError, cbor.dumps, {(1,): 1})
    _raises(ValueError, cbor.dumps, 1 << 64)
    _raises(ValueError, cbor.dumps, -(1 << 64) - 1)
    _raises(ValueError, cbor.dumps, cbor.Tag(-1, 0))
    _raises(ValueError, cbor.dumps, cbor.Tag(1 << 64, 0))
    # the hard limits hold for what we make, too
    deep = 0
    for _ in range(wire.MAX_DEPTH):
        deep = [deep]
    assert cbor.loads(cbor.dumps(deep)) == deep
    _raises(ValueError, cbor.dumps, [deep])
    _raises(ValueError, cbor.dumps, cbor.Tag(18, deep))
    assert len(cbor.dumps([0] * wire.MAX_ITEMS)) == 3 + wire.MAX_ITEMS
    _raises(ValueError, cbor.dumps, [0] * (wire.MAX_ITEMS + 1))
    _raises(ValueError, cbor.dumps, dict((i, 0) for i in range(wire.MAX_ITEMS + 1)))
    _raises(ValueError, cbor.dumps, [[0] * 2047] * 8)  # 16385 data items


def test_limits():
    nest = b"\x81" * wire.MAX_DEPTH + b"\x00"
    assert cbor.loads(nest) is not None
    assert _reason(b"\x81" + nest) == wire.R_OVERSIZED
    assert _reason(b"\xa1\x00" * wire.MAX_DEPTH + b"\x00") is None
    assert _reason(b"\xa1\x00" * (wire.MAX_DEPTH + 1) + b"\x00") == wire.R_OVERSIZED
    # tags count as nesting
    assert _reason(b"\xd2" + b"\x81" * (wire.MAX_DEPTH - 1) + b"\x00", tag_depth=0) is None
    assert _reason(b"\xd2" + b"\x81" * wire.MAX_DEPTH + b"\x00", tag_depth=0) == wire.R_OVERSIZED
    # entries in one array or map
    assert len(cbor.loads(b"\x99\x08\x00" + b"\x00" * 2048)) == wire.MAX_ITEMS
    assert _reason(b"\x99\x08\x01" + b"\x00" * 2049) == wire.R_OVERSIZED
    assert _reason(b"\xb9\x08\x01") == wire.R_OVERSIZED  # refused at the head
    # whole document
    big = b"\x59\x40\x00" + b"\x00" * 16384
    assert _reason(big) == wire.R_OVERSIZED
    assert len(cbor.loads(big, max_bytes=None)) == 16384
    assert len(cbor.loads(b"\x59\x3f\xfd" + b"\x00" * 16381)) == 16381  # 16384 bytes
    # data items: 1 + 8 + 8 * 2047 = 16385 (only reachable past MAX_TX_BYTES)
    doc = b"\x88" + (b"\x99\x07\xff" + b"\x00" * 2047) * 8
    assert _reason(doc, max_bytes=None) == wire.R_OVERSIZED
    doc = b"\x88" + (b"\x99\x07\xff" + b"\x00" * 2047) * 7 + b"\x99\x07\xfe" + b"\x00" * 2046
    assert len(cbor.loads(doc, max_bytes=None)) == 8


def test_lying_lengths():
    # lengths are checked against the bytes left before anything is allocated
    for x in (
        "5bffffffffffffffff",
        "7bffffffffffffffff",
        "5a7fffffff00",
        "7a0001000061",
        "5b0000000100000000",
        "58ff00",
    ):
        assert _reason(h(x)) == wire.R_MALFORMED, x
    for x in ("9bffffffffffffffff", "bbffffffffffffffff", "9a00010000"):
        assert _reason(h(x)) == wire.R_OVERSIZED, x
    # a count within the limit that the bytes do not hold: truncated
    assert _reason(h("99080000")) == wire.R_MALFORMED
    assert _reason(h("b9080000")) == wire.R_MALFORMED


def test_non_canonical():
    for x in (
        "1800",
        "1817",
        "190000",
        "1900ff",
        "1a0000ffff",
        "1b00000000ffffffff",
        "3800",
        "390017",
        "3a0000ffff",
        "3b00000000ffffffff",
        "5800",
        "58170000",
        "7800",
        "780161",
        "9800",
        "99000100",
        "b800",
        "ba000000010000",
        "a202000100",  # unsorted
        "a201000100",  # duplicate
        "a22000181800",  # shortest-first (RFC 7049) order, not bytewise
        "a2616100186400",
        "a262616100616200",  # "aa" before "b": bytewise is 0x62.. vs 0x61..
    ):
        assert _reason(h(x)) == wire.R_NON_CANONICAL, x
    assert _reason(h("d81280"), tag_depth=0) == wire.R_NON_CANONICAL
    assert _reason(h("a261620062616100")) is None


def test_unsupported():
    for x in (
        "f90000",
        "fa00000000",
        "fb0000000000000000",
        "f7",
        "e0",
        "f3",
        "f820",
        "f8ff",
        "5f4100ff",
        "7f6161ff",
        "9fff",
        "bfff",
        "9f01ff",
        "5f",
        "9f",
        "c000",
        "d2d2",
        "d8ff00",
        "c2",
        "c2410000",  # tags where none is allowed
        "a14000",
        "a1f500",
        "a1f600",
        "a1800000",
        "a1a00000",
        "a1f400",  # map keys
        "a101fa00000000",
    ):
        assert _reason(h(x)) == wire.R_UNSUPPORTED, x


def test_malformed():
    for x in (
        "",
        "1c",
        "1d",
        "1e",
        "3c",
        "5c",
        "7d",
        "9e",
        "bc",
        "dc",
        "fc",
        "fd",
        "fe",
        "1f",
        "3f",
        "df",
        "ff",
        "81ff",
        "f800",
        "f81f",
        "18",
        "19ff",
        "1a000000",
        "1b00",
        "41",
        "62c3",
        "8201",
        "a101",
        "a1",
        "d2",
        "0000",
        "8000",
        "a000",  # trailing bytes
        "61ff",
        "61c3",
        "62c080",
        "62c1bf",
        "63eda080",
        "63edbfbf",
        "64f4908080",
        "64f8888080",
        "63e08080",
        "64f0808080",
        "62c328",
        "6180",
        "8201f9",
    ):
        assert _reason(h(x), tag_depth=0) == wire.R_MALFORMED, x
    # the largest code point and the last before the surrogates are fine
    assert cbor.loads(h("64f48fbfbf")) == "\U0010ffff"
    assert cbor.loads(h("63ed9fbf")) == "\ud7ff"


def test_first_fault_wins():
    # one left-to-right scan: the earlier fault is the reason
    assert _reason(h("821800f7")) == wire.R_NON_CANONICAL
    assert _reason(h("82f71800")) == wire.R_UNSUPPORTED
    assert _reason(h("83f7")) == wire.R_UNSUPPORTED  # before the truncation
    assert _reason(h("821cf7")) == wire.R_MALFORMED
    assert _reason(h("a201000000ff")) == wire.R_NON_CANONICAL  # before trailing byte
    assert _reason(h("a2010000f7")) == wire.R_NON_CANONICAL  # key order, then value


def test_spans_keep_entry_bytes():
    data = h("82d28440a041aa410043010203")
    obj, spans = cbor.loads(data, tag_depth=1, spans=True)
    assert obj == [cbor.Tag(18, [b"", {}, b"\xaa", b"\x00"]), b"\x01\x02\x03"]
    assert spans == [(1, 9), (9, 13)]
    assert data[spans[0][0] : spans[0][1]] == cbor.dumps(obj[0])
    obj, spans = cbor.loads(h("01"), spans=True)
    assert obj == 1 and spans == []


def _sample():
    return cbor.dumps(
        [
            cbor.Tag(18, [cbor.dumps({1: -8, 4: b"dev"}), {}, b"\x11" * 32, b"\x22" * 64]),
            cbor.dumps(
                {
                    0: 1,
                    2: "feeder-7",
                    5: [1700000000000000, 1, 1500],
                    7: [{0: 1, 2: [0, 1000, -1], 3: [[1, 1, [50012, 1, -2, 0]]]}],
                }
            ),
            {"a": [True, False, None], -100: "\u6c34", 1 << 40: -(1 << 63)},
        ]
    )


def test_truncations_every_length():
    data = _sample()
    assert cbor.loads(data, tag_depth=1)[0].tag == 18
    for n in range(len(data)):
        assert _reason(data[:n], tag_depth=1) == wire.R_MALFORMED, n


def test_bytes_fed_one_at_a_time():
    # growing the document one byte at a time: refused as truncated until whole
    data = _sample()
    buf = bytearray()
    for i, b in enumerate(data):
        buf.append(b)
        if i + 1 < len(data):
            assert _reason(bytes(buf), tag_depth=1) == wire.R_MALFORMED
    assert cbor.dumps(cbor.loads(bytes(buf), tag_depth=1)) == data


def test_mutations_refuse_or_round_trip():
    # Any single-byte change either decodes to a value that re-encodes to the
    # very same bytes (the decoder takes only the deterministic form), or is
    # refused with CBORError; nothing else escapes.
    data = _sample()
    accepted = 0
    for i in range(len(data)):
        for v in (
            0x00,
            0x17,
            0x18,
            0x1F,
            0x3B,
            0x5B,
            0x7B,
            0x9B,
            0xBB,
            0xDB,
            0xFF,
            data[i] ^ 0x01,
            data[i] ^ 0x20,
            data[i] ^ 0x80,
        ):
            m = data[:i] + bytes([v]) + data[i + 1 :]
            try:
                obj = cbor.loads(m, tag_depth=1)
            except CBORError as e:
                assert e.reason in wire.REASONS
                continue
            assert cbor.dumps(obj) == m, (i, v)
            accepted += 1
    assert accepted > 0


def test_error_family():
    try:
        cbor.loads(b"\x18")
    except ValueError as e:
        assert isinstance(e, CBORError) and e.reason == wire.R_MALFORMED
        assert str(e).startswith("malformed")
    _raises(TypeError, cbor.loads, "00")
    assert cbor.loads(bytearray(b"\x01")) == 1
    assert cbor.loads(memoryview(b"\x41\x00")) == b"\x00"
