"""Modbus RTU framing: unit address, PDU, CRC-16; bus timing from the baud rate.

    >>> rtu.encode(1, pdu.encode_request(3, 0, 1)).hex()
    '010300000001840a'
    >>> f = rtu.RtuFramer(); f.feed(frame_bytes); f.response()   # (unit, pdu) or None

An RTU frame carries no length: the function code and, for some, a byte
count say how long it is, so a framer is told whether it reads requests
(a tap, or a server) or responses (a master). The frame's end on the wire
is a silence of t3.5; receiving, the CRC is what decides, because USB
adapters and operating systems deliver bytes in bursts that make the
1.5-character rule impossible to apply; transmitting, the master keeps t3.5
of silence before each request.
"""

import array

from . import RemoteProtocolError
from .framebuf import FrameBuffer
from .pdu import request_length, response_length

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


MAX_ADU = const(256)
_MIN_ADU = const(4)  # unit, function, CRC
BITS_PER_CHAR = const(11)  # start, 8 data, parity (or a second stop bit), stop
_FAST_BAUD = const(19200)  # above it the timers are fixed (section 2.5.1.1 of the serial line spec)

# The line a master opens when told nothing else: 9600 baud, 8 data bits, even parity, 1 stop bit.
DEFAULT_LINE = (9600, "E", 1)


def _make_table():
    t = array.array("H", bytes(512))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t[i] = c
    return t


_TABLE = _make_table()


def crc16(data, start=0, end=None):
    """CRC-16/MODBUS of ``data[start:end]`` (polynomial 0xA001 reflected, initial 0xFFFF)."""
    if end is None:
        end = len(data)
    crc = 0xFFFF
    t = _TABLE
    for i in range(start, end):
        crc = (crc >> 8) ^ t[(crc ^ data[i]) & 0xFF]
    return crc


def char_us(baud):
    """Microseconds one character takes on the line."""
    return (BITS_PER_CHAR * 1000000 + baud - 1) // baud


def t35_us(baud):
    """The silence that ends a frame: 3.5 characters, 1750 us above 19,200 baud (rounded up)."""
    if baud > _FAST_BAUD:
        return 1750
    return (35 * BITS_PER_CHAR * 100000 + baud - 1) // baud


def t15_us(baud):
    """The longest gap allowed inside a frame: 1.5 characters, 750 us above 19,200 baud."""
    if baud > _FAST_BAUD:
        return 750
    return (15 * BITS_PER_CHAR * 100000 + baud - 1) // baud


def encode(unit, pdu):
    """The RTU frame (ADU) for ``pdu`` to or from ``unit``: CRC low byte first."""
    if not 0 <= unit <= 255:
        raise ValueError("unit %d outside 0-255" % unit)
    out = bytearray(1 + len(pdu) + 2)
    out[0] = unit
    out[1:-2] = pdu
    crc = crc16(out, 0, len(out) - 2)
    out[-2] = crc & 0xFF
    out[-1] = crc >> 8
    return bytes(out)


class RtuFramer(FrameBuffer):
    """Collects bytes from a line and cuts them into frames; one buffer, allocated here.

    ``feed`` takes bytes; ``response()`` / ``request()`` return ``(unit,
    pdu)`` when a whole frame with a good CRC is at the front (``pdu`` a
    memoryview into the buffer, valid until the next call), None while it
    is incomplete, and raise RemoteProtocolError when the front cannot be
    a frame. ``take=False`` looks without removing the frame (a tap tries
    both readings of the same bytes). After an error the caller ``reset()``s (a master, which will
    ask again) or ``skip(1)``s (a tap, finding the next frame).
    """

    def __init__(self):
        FrameBuffer.__init__(self, MAX_ADU)

    def skip(self, n):
        self.start = min(self.start + n, self.end)
        if self.start == self.end:
            self.start = self.end = 0

    def feed(self, data):
        k = len(data)
        if self.end + k > MAX_ADU and self.compact() + k > MAX_ADU:
            self.reset()
            raise RemoteProtocolError("more than %d bytes without a frame" % MAX_ADU)
        return self.put(data, k)

    def response(self, take=True):
        return self._frame(response_length, take)

    def request(self, take=True):
        return self._frame(request_length, take)

    def _frame(self, length_of, take):
        n = self.end - self.start
        if n < 2:
            return None
        front = self.mv[self.start:self.end]
        body = length_of(front[1:], n - 1)
        if body == 0:
            return None
        size = 1 + body + 2
        if size > MAX_ADU:
            raise RemoteProtocolError("frame length %d past the %d-byte limit" % (size, MAX_ADU))
        if n < size:
            return None
        crc = crc16(front, 0, size - 2)
        got = front[size - 2] | front[size - 1] << 8
        if crc != got:
            raise RemoteProtocolError("CRC 0x%04x, computed 0x%04x" % (got, crc))
        if not take:
            return front[0], front[1:size - 2]
        self.start += size
        if self.start == self.end:
            self.start = self.end = 0
        return front[0], front[1:size - 2]
