"""Bounded BER: read a TLV inside a window of a buffer, write one.

Every length is checked against the bytes left in its window; long-form
lengths take at most 3 octets, tag numbers at most 3; indefinite lengths
are refused (MMS does not use them). A tag is returned as one int: the
identifier octet for tag numbers below 31, else
``(class|constructed) << 16 | number``.

    tag, start, end = ber.read_tlv(buf, 0, len(buf))
"""

from .errors import RemoteProtocolError


def read_tlv(buf, pos, end):
    """(tag, value_start, value_end) of the TLV at ``pos``; never reads past ``end``."""
    if pos + 2 > end:
        raise RemoteProtocolError("BER: truncated header at %d" % pos)
    first = buf[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        num = 0
        for _ in range(3):
            if pos >= end:
                raise RemoteProtocolError("BER: truncated tag")
            b = buf[pos]
            pos += 1
            num = (num << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        else:
            raise RemoteProtocolError("BER: tag number too long")
        tag = ((first & 0xE0) << 16) | num
    else:
        tag = first
    if pos >= end:
        raise RemoteProtocolError("BER: truncated length")
    n = buf[pos]
    pos += 1
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise RemoteProtocolError("BER: indefinite length")
        if k > 3:
            raise RemoteProtocolError("BER: length of %d octets" % k)
        if pos + k > end:
            raise RemoteProtocolError("BER: truncated length")
        n = 0
        for _ in range(k):
            n = (n << 8) | buf[pos]
            pos += 1
    if n > end - pos:
        raise RemoteProtocolError("BER: length %d past the end (%d left)" % (n, end - pos))
    return tag, pos, pos + n


def expect(buf, pos, end, tag, what):
    """Like read_tlv, but the tag must be ``tag``."""
    t, s, e = read_tlv(buf, pos, end)
    if t != tag:
        raise RemoteProtocolError("%s: tag 0x%x, expected 0x%x" % (what, t, tag))
    return s, e


def uint(buf, s, e, what="integer"):
    """A non-negative INTEGER of at most 4 value octets."""
    if e <= s or e - s > 5:
        raise RemoteProtocolError("%s: %d octets" % (what, e - s))
    if buf[s] & 0x80:
        raise RemoteProtocolError("%s: negative" % what)
    v = 0
    for i in range(s, e):
        v = (v << 8) | buf[i]
    return v


def length(n):
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    raise ValueError("BER: length %d too large" % n)


def tlv(tag, body=b""):
    """One TLV with a one-octet identifier."""
    return bytes((tag,)) + length(len(body)) + body


def _octets(v, n):
    out = bytearray(n)
    for i in range(n):
        out[n - 1 - i] = (v >> (8 * i)) & 0xFF
    return bytes(out)


def enc_uint(tag, v):
    """An unsigned value as INTEGER octets (a leading zero when the top bit is set)."""
    if v < 0:
        raise ValueError("negative value for an unsigned field")
    n = 1
    while v >> (8 * n - 1):
        n += 1
    return tlv(tag, _octets(v, n))


def enc_int(tag, v):
    """A signed INTEGER in the fewest octets."""
    n = 1
    while not -(1 << (8 * n - 1)) <= v < (1 << (8 * n - 1)):
        n += 1
    return tlv(tag, _octets(v & ((1 << (8 * n)) - 1), n))
