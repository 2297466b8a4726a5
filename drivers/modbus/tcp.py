"""Modbus TCP framing: the MBAP header (transaction id, protocol 0, length, unit) before a PDU.

    >>> tcp.encode(7, 1, pdu.encode_request(3, 0, 2)).hex()
    '000700000006010300000002'
    >>> f = tcp.TcpFramer(); f.feed(data); f.frame()   # (tid, unit, pdu) or None

The length field says where a frame ends; one that points past the
largest ADU (or below a function code) is refused at once, instead of
waiting for bytes that will never come.
"""

import struct

from . import RemoteProtocolError
from .framebuf import FrameBuffer
from .pdu import MAX_PDU

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


HEADER = const(7)
MAX_ADU = const(260)  # 7-byte MBAP header + 253-byte PDU


def encode(tid, unit, pdu):
    if not 0 <= tid <= 0xFFFF:
        raise ValueError("transaction id %d outside 0-65535" % tid)
    if not 0 <= unit <= 255:
        raise ValueError("unit %d outside 0-255" % unit)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + bytes(pdu)


class TcpFramer(FrameBuffer):
    """Cuts a TCP byte stream into ``(tid, unit, pdu)``; one buffer, allocated here.

    ``pdu`` is a memoryview into the buffer, valid until the next call.
    A frame that cannot be Modbus TCP (protocol id not 0, length out of
    range) raises RemoteProtocolError; the stream has lost its framing and
    the caller resets (a master closes the connection).
    """

    def __init__(self):
        FrameBuffer.__init__(self, MAX_ADU)

    def feed(self, data):
        k = len(data)
        if self.end + k > MAX_ADU:
            n = self.compact()
            if n + k > MAX_ADU:
                # More than one frame's worth arrived at once: keep what fits,
                # the caller comes back for the rest after taking a frame.
                k = MAX_ADU - n
        return self.put(data, k)

    def frame(self):
        n = self.end - self.start
        if n < HEADER:
            return None
        tid, proto, length = struct.unpack_from(">HHH", self.buf, self.start)
        if proto != 0:
            raise RemoteProtocolError("protocol id %d, not 0 (Modbus)" % proto)
        if not 2 <= length <= MAX_PDU + 1:
            raise RemoteProtocolError("MBAP length %d outside 2-%d" % (length, MAX_PDU + 1))
        size = 6 + length
        if n < size:
            return None
        s = self.start
        self.start += size
        if self.start == self.end:
            self.start = self.end = 0
        return tid, self.buf[s + 6], self.mv[s + 7:s + size]
