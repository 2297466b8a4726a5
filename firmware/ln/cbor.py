"""Deterministic CBOR (RFC 8949 section 4.2.1), the subset of the wire format.

``dumps`` encodes ints (64-bit), bytes, str, lists/tuples, dicts with int
or str keys, ``True``/``False``/``None`` and ``Tag``; anything else, or a
value over a hard limit of ``ln.wire``, is the caller's mistake
(``TypeError``/``ValueError``). ``loads`` is the strict, bounded decoder
for bytes from outside: it refuses with ``CBORError`` (``.reason`` one of
``wire.R_*``) and nothing else, whatever the input.

    >>> from ln import cbor
    >>> cbor.dumps({4: b"ab", 1: -8}).hex()
    'a2012704426162'
    >>> cbor.loads(b"\\x82\\x01\\x02")
    [1, 2]

Refusals come from one left-to-right scan and the first fault met wins.
At each data item's head the checks run in this order: a missing byte or
reserved additional information is ``malformed``; an indefinite length
is ``unsupported`` (a lone break, or an indefinite int or tag, is
``malformed``); the argument bytes must be there (``malformed``); floats,
``undefined`` and other simple values are ``unsupported`` (a two-byte
simple value below 32 is ``malformed``); a tag anywhere but where the
caller allows one is ``unsupported``; a non-shortest argument is
``non-canonical``; then the item counts against MAX_TOTAL_ITEMS, a string
length against the bytes left (``malformed``, before anything is copied)
and its UTF-8, a container's entry count against MAX_ITEMS and its
nesting against MAX_DEPTH (``oversized``). A map key is scanned whole,
then must be an int or a str (``unsupported``) and sort strictly after
the key before it (``non-canonical``). Bytes after the item are
``malformed``.

Nesting counts containers (arrays, maps, tags): a top-level item is at
depth 0, and a container at depth MAX_DEPTH (the ninth level) is refused.
"""

from . import wire
from .errors import CBORError

_MAX_UINT = (1 << 64) - 1
_MIN_NEG = -(1 << 64)
# Smallest argument that needs 1, 2, 4, 8 following bytes.
_SHORTEST = (24, 0x100, 0x10000, 0x100000000)


class Tag:
    """A tagged data item: ``Tag(18, [...])`` is a COSE_Sign1."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


class Raw:
    """An item already in deterministic CBOR, written as it is (``readings.series_cbor``)."""

    def __init__(self, data):
        self.data = data

    def __eq__(self, other):
        return isinstance(other, Raw) and self.data == other.data


# ---------------------------------------------------------------- encoding


def _head(out, mt, n):
    mt <<= 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        out.append(mt | 26)
        out.extend(n.to_bytes(4, "big"))
    else:
        out.append(mt | 27)
        out.extend(n.to_bytes(8, "big"))


def put_int(out, v):
    """Append integer ``v`` (64-bit range) in its shortest form."""
    if v > _MAX_UINT or v < _MIN_NEG:
        raise ValueError("integer %d over 64 bits" % v)
    if v >= 0:
        _head(out, 0, v)
    else:
        _head(out, 1, -1 - v)


head = _head  # head(out, major type, argument): an array, map or string header


def _enc(out, obj, depth, count):
    count[0] += 1
    if count[0] > wire.MAX_TOTAL_ITEMS:
        raise ValueError("more than %d data items" % wire.MAX_TOTAL_ITEMS)
    if isinstance(obj, Raw):
        out.extend(obj.data)
    elif obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        put_int(out, obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(obj, (list, tuple, dict, Tag)):
        if depth >= wire.MAX_DEPTH:
            raise ValueError("nested deeper than %d" % wire.MAX_DEPTH)
        if isinstance(obj, Tag):
            if not isinstance(obj.tag, int) or obj.tag is True or obj.tag is False:
                raise TypeError("tag number must be an int")
            if not 0 <= obj.tag <= _MAX_UINT:
                raise ValueError("tag number %d out of range" % obj.tag)
            _head(out, 6, obj.tag)
            _enc(out, obj.value, depth + 1, count)
            return
        if len(obj) > wire.MAX_ITEMS:
            raise ValueError("more than %d entries" % wire.MAX_ITEMS)
        if isinstance(obj, dict):
            pairs = []
            for k, v in obj.items():
                if k is True or k is False or not isinstance(k, (int, str)):
                    raise TypeError("map key %r: only int and str keys" % (k,))
                kb = bytearray()
                _enc(kb, k, depth + 1, count)
                pairs.append((bytes(kb), v))
            pairs.sort(key=lambda p: p[0])
            _head(out, 5, len(pairs))
            for kb, v in pairs:
                out.extend(kb)
                _enc(out, v, depth + 1, count)
        else:
            _head(out, 4, len(obj))
            for v in obj:
                _enc(out, v, depth + 1, count)
    else:
        raise TypeError("%s is outside the CBOR subset" % type(obj).__name__)


def dumps(obj):
    """The deterministic encoding of ``obj`` (ValueError/TypeError if outside the subset)."""
    out = bytearray()
    _enc(out, obj, 0, [0])
    return bytes(out)


# ---------------------------------------------------------------- decoding


def _utf8_ok(b):
    """Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            need = 1
        elif c == 0xE0:
            need = 2
            lo = 0xA0
        elif c == 0xED:
            need = 2
            hi = 0x9F
        elif 0xE1 <= c <= 0xEF:
            need = 2
        elif c == 0xF0:
            need = 3
            lo = 0x90
        elif c == 0xF4:
            need = 3
            hi = 0x8F
        elif 0xF1 <= c <= 0xF3:
            need = 3
        else:
            return False
        if i + need >= n:
            return False
        c = b[i + 1]
        if c < lo or c > hi:
            return False
        for j in range(i + 2, i + need + 1):
            c = b[j]
            if c < 0x80 or c > 0xBF:
                return False
        i += need + 1
    return True


class _Scan:
    def __init__(self, data, tag_depth, spans):
        self.d = data
        self.n = len(data)
        self.i = 0
        self.items = 0
        self.tag_depth = tag_depth
        self.spans = [] if spans else None

    def item(self, depth):
        d = self.d
        n = self.n
        i = self.i
        if i >= n:
            raise CBORError(wire.R_MALFORMED, "truncated at byte %d" % i)
        at = i
        ib = d[i]
        mt = ib >> 5
        ai = ib & 31
        i += 1
        if ai < 24:
            arg = ai
        elif ai < 28:
            w = 1 << (ai - 24)
            if n - i < w:
                raise CBORError(wire.R_MALFORMED, "truncated head at byte %d" % at)
            arg = d[i] if w == 1 else int.from_bytes(d[i : i + w], "big")
            i += w
        elif ai == 31:
            if 2 <= mt <= 5:
                raise CBORError(wire.R_UNSUPPORTED, "indefinite length at byte %d" % at)
            raise CBORError(wire.R_MALFORMED, "unexpected break or indefinite item at byte %d" % at)
        else:
            raise CBORError(wire.R_MALFORMED, "reserved additional information at byte %d" % at)
        if mt == 7:
            self._count(at)
            self.i = i
            if ai == 20:
                return False
            if ai == 21:
                return True
            if ai == 22:
                return None
            if ai == 24 and arg < 32:
                raise CBORError(wire.R_MALFORMED, "two-byte simple value %d at byte %d" % (arg, at))
            if 25 <= ai <= 27:
                raise CBORError(wire.R_UNSUPPORTED, "floating point at byte %d" % at)
            raise CBORError(wire.R_UNSUPPORTED, "simple value %d at byte %d" % (arg, at))
        if mt == 6 and depth != self.tag_depth:
            raise CBORError(wire.R_UNSUPPORTED, "tag %d at byte %d" % (arg, at))
        if ai >= 24 and arg < _SHORTEST[ai - 24]:
            raise CBORError(wire.R_NON_CANONICAL, "long form of %d at byte %d" % (arg, at))
        self._count(at)
        if mt == 0:
            self.i = i
            return arg
        if mt == 1:
            self.i = i
            return -1 - arg
        if mt <= 3:
            if arg > n - i:
                raise CBORError(
                    wire.R_MALFORMED, "string of %d bytes at byte %d runs past the end" % (arg, at)
                )
            self.i = i + arg
            b = d[i : i + arg]
            if mt == 2:
                return b
            if _utf8_ok(b):
                try:
                    return str(b, "utf-8")
                except Exception:  # _utf8_ok let through what the port refuses
                    pass
            raise CBORError(wire.R_MALFORMED, "invalid UTF-8 at byte %d" % at)
        if depth >= wire.MAX_DEPTH:
            raise CBORError(
                wire.R_OVERSIZED, "nested deeper than %d at byte %d" % (wire.MAX_DEPTH, at)
            )
        self.i = i
        if mt == 6:
            return Tag(arg, self.item(depth + 1))
        if arg > wire.MAX_ITEMS:
            raise CBORError(wire.R_OVERSIZED, "%d entries at byte %d" % (arg, at))
        if mt == 4:
            out = []
            spans = self.spans if depth == 0 else None
            for _ in range(arg):
                s = self.i
                out.append(self.item(depth + 1))
                if spans is not None:
                    spans.append((s, self.i))
            return out
        out = {}
        prev = None
        for _ in range(arg):
            s = self.i
            k = self.item(depth + 1)
            if type(k) is not int and type(k) is not str:
                raise CBORError(
                    wire.R_UNSUPPORTED, "map key of type %s at byte %d" % (type(k).__name__, s)
                )
            kb = d[s : self.i]
            if prev is not None and not prev < kb:
                raise CBORError(
                    wire.R_NON_CANONICAL,
                    "map key at byte %d %s" % (s, "repeated" if kb == prev else "out of order"),
                )
            prev = kb
            out[k] = self.item(depth + 1)
        return out

    def _count(self, at):
        self.items += 1
        if self.items > wire.MAX_TOTAL_ITEMS:
            raise CBORError(
                wire.R_OVERSIZED, "more than %d data items at byte %d" % (wire.MAX_TOTAL_ITEMS, at)
            )


def loads(data, tag_depth=-1, spans=False, max_bytes=wire.MAX_TX_BYTES):
    """Decode one whole document of the subset, or raise CBORError.

    Arrays come back as lists, maps as dicts, tags as ``Tag``. A tag is
    accepted only at nesting depth ``tag_depth`` (0: the top item, 1: an
    entry of the top array; -1: nowhere), with any tag number: the caller
    judges the number. With ``spans=True`` the result is ``(obj, spans)``,
    ``spans`` the ``(start, end)`` byte offsets of each entry of the top
    array (empty if the top item is no array), so a caller can keep an
    entry's exact bytes. A document over ``max_bytes`` is ``oversized``.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise TypeError("loads takes bytes, not %s" % type(data).__name__)
    if max_bytes is not None and len(data) > max_bytes:
        raise CBORError(wire.R_OVERSIZED, "%d bytes, limit %d" % (len(data), max_bytes))
    s = _Scan(data, tag_depth, spans)
    obj = s.item(0)
    if s.i != s.n:
        raise CBORError(wire.R_MALFORMED, "%d bytes after the item" % (s.n - s.i))
    if spans:
        return obj, s.spans
    return obj
