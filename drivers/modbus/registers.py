"""Registers to numbers, as meters lay them out: 16/32/64-bit integers and floats in four orders.

Orders name where the value's big-endian bytes A (most significant) to
D sit on the wire, for 32 bits: ``ABCD`` big-endian, ``DCBA`` little-endian,
``BADC`` bytes swapped in each register, ``CDAB`` registers swapped. For 64
bits the same rule runs over eight bytes (``CDAB``: the four registers in
reverse order, bytes in each kept); for 16 bits ``DCBA`` and ``BADC`` swap
the two bytes.

    >>> registers.decode([0x4148, 0x0000], "f32")
    12.5
    >>> registers.decode([0x0000, 0x4148], "f32", "CDAB")
    12.5
    >>> registers.encode(12.5, "f32", "CDAB")
    [0, 16712]

A point of a map (docs/point-maps.md) reads through ``decode_point``, with
its ``scale`` or SunSpec-style ``scale_register`` applied.
"""

import struct

TYPES = ("u16", "s16", "u32", "s32", "u64", "s64", "f32", "f64")
ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")
_FMT = {"u16": ">H", "s16": ">h", "u32": ">I", "s32": ">i", "u64": ">Q", "s64": ">q",
        "f32": ">f", "f64": ">d"}
_NREGS = {"bool": 1, "u16": 1, "s16": 1, "u32": 2, "s32": 2, "u64": 4, "s64": 4, "f32": 2, "f64": 4}
# SunSpec's "not implemented" value per type (the f32 one is any NaN).
_RANGE = {"u16": (0, 0xFFFF), "s16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF),
          "s32": (-0x80000000, 0x7FFFFFFF), "u64": (0, 0xFFFFFFFFFFFFFFFF),
          "s64": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF)}
_UNSET = {"u16": 0xFFFF, "s16": -0x8000, "u32": 0xFFFFFFFF, "s32": -0x80000000,
          "u64": 0xFFFFFFFFFFFFFFFF, "s64": -0x8000000000000000}
SF_UNSET = -0x8000

_scratch = bytearray(8)  # one value at a time, never held


def count(type_):
    """Registers (or coils) a value of ``type_`` spans."""
    try:
        return _NREGS[type_]
    except KeyError:
        raise ValueError("unknown register type %r" % (type_,))


def _slot(order, k, n):
    """(word position in canonical order, bytes swapped?) of wire register ``k`` of ``n``."""
    if order == "ABCD":
        return k, False
    if order == "CDAB":
        return n - 1 - k, False
    if order == "BADC":
        return k, True
    if order == "DCBA":
        return n - 1 - k, True
    raise ValueError("unknown order %r (ABCD, DCBA, BADC, CDAB)" % (order,))


def decode(regs, type_, order="ABCD", offset=0):
    """The value of ``type_`` held in ``regs[offset:]`` (register values 0-65535)."""
    n = count(type_)
    if type_ == "bool":
        return bool(regs[offset])
    if len(regs) < offset + n:
        raise ValueError("%s needs %d registers, %d given" % (type_, n, len(regs) - offset))
    s = _scratch
    for k in range(n):
        r = regs[offset + k]
        j, swap = _slot(order, k, n)
        if swap:
            s[2 * j] = r & 0xFF
            s[2 * j + 1] = r >> 8
        else:
            s[2 * j] = r >> 8
            s[2 * j + 1] = r & 0xFF
    return struct.unpack_from(_FMT[type_], s)[0]


def encode(value, type_, order="ABCD"):
    """The registers that hold ``value`` as ``type_`` in ``order``."""
    n = count(type_)
    if type_ == "bool":
        return [1 if value else 0]
    s = _scratch
    lim = _RANGE.get(type_)
    # MicroPython's struct truncates an integer that does not fit; say so instead
    if lim is not None and not lim[0] <= value <= lim[1]:
        raise ValueError("%r does not fit %s" % (value, type_))
    try:
        struct.pack_into(_FMT[type_], s, 0, value)
    except (OverflowError, struct.error):
        raise ValueError("%r does not fit %s" % (value, type_))
    out = [0] * n
    for k in range(n):
        j, swap = _slot(order, k, n)
        if swap:
            out[k] = s[2 * j + 1] << 8 | s[2 * j]
        else:
            out[k] = s[2 * j] << 8 | s[2 * j + 1]
    return out


def unset(raw, type_):
    """True for SunSpec's "not implemented" value of ``type_``."""
    if type_ in ("f32", "f64"):
        return raw != raw
    return _UNSET.get(type_) == raw


def scaled(raw, scale=None, sf=None):
    """``raw`` times ``scale``, or times 10**``sf`` (a SunSpec scale factor)."""
    if sf is not None:
        # dividing by an exact power of ten rounds once; multiplying by 0.1 rounds twice
        return raw / 10.0 ** -sf if sf < 0 else raw * 10.0 ** sf
    if scale is not None:
        return raw * scale
    return raw


def span(read):
    """(first, last) addresses a map point's ``read`` needs, scale register included."""
    first = read["address"]
    last = first + count(read.get("type", "u16")) - 1
    sr = read.get("scale_register")
    if sr is not None:
        first = min(first, sr)
        last = max(last, sr)
    return first, last


def decode_point(read, regs, base):
    """A map point's value from ``regs`` read from address ``base`` of its table.

    None when a SunSpec-style point or its scale factor says "not
    implemented"; ValueError when ``regs`` do not cover the point.
    """
    first, last = span(read)
    if first < base or last >= base + len(regs):
        raise ValueError("registers %d-%d do not cover %d-%d" % (base, base + len(regs) - 1, first, last))
    type_ = read.get("type", "u16")
    raw = decode(regs, type_, read.get("order", "ABCD"), read["address"] - base)
    sr = read.get("scale_register")
    if sr is None:
        return scaled(raw, read.get("scale"))
    sf = regs[sr - base]
    if sf >= 0x8000:
        sf -= 0x10000
    if sf == SF_UNSET or unset(raw, type_):
        return None
    return scaled(raw, None, sf)


def plan(reads, max_count=125, max_gap=8):
    """Requests ``(table, address, count)`` that cover every ``read``, merged where close.

    Registers between two points are read when fewer than ``max_gap``:
    one request costs more than a few spare registers.
    """
    spans = sorted((r["table"],) + span(r) for r in reads)
    out = []
    for table, first, last in spans:
        limit = 2000 if table in ("coil", "discrete") else max_count
        if out and out[-1][0] == table:
            t, a, c = out[-1]
            end = a + c - 1
            if first <= end + max_gap and max(end, last) - a + 1 <= limit:
                out[-1] = (t, a, max(end, last) - a + 1)
                continue
        out.append((table, first, last - first + 1))
    return out
