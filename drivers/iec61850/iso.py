"""The ISO stack under MMS: TPKT (RFC 1006), COTP class 0, session, presentation, ACSE.

Outgoing association PDUs are built from fixed templates (the selectors
and contexts every IEC 61850 server accepts); what comes back is parsed
and checked layer by layer. ``Framer`` cuts TPKTs out of a byte stream in
a buffer allocated once and joins COTP data segments.

    f = iso.Framer(4096)
    f.feed(data)
    code, buf, s, e = f.next_tpdu()  # None while a TPDU is incomplete
"""

from . import ber
from .errors import LocalProtocolError, RemoteProtocolError

# COTP TPDU codes
CR = 0xE0
CC = 0xD0
DT = 0xF0
DR = 0x80
ER = 0x70

TPKT_HEADER = 4
_SESSION_DATA = b"\x01\x00\x01\x00"  # give tokens + data transfer, no parameters
_CTX_ACSE = 1
_CTX_MMS = 3


def tpkt(payload):
    n = len(payload) + 4
    if n > 0xFFFF:
        raise LocalProtocolError("TPKT: %d bytes" % n)
    return bytes((3, 0, n >> 8, n & 0xFF)) + payload


def connect_request(tpdu_size_code=0x0B):
    """COTP CR: class 0, TPDU size 2**code (0x0B: 2048), TSAPs 0001."""
    body = b"\xe0\x00\x00\x00\x01\x00" + bytes((0xC0, 1, tpdu_size_code)) + b"\xc1\x02\x00\x01\xc2\x02\x00\x01"
    return tpkt(bytes((len(body),)) + body)


def data(user_data):
    """COTP DT (one segment, end of TSDU) around session+presentation user data."""
    return tpkt(b"\x02\xf0\x80" + user_data)


def mms_data(mms_pdu):
    """An MMS PDU as session data transfer + presentation user data (context 3)."""
    pdv = ber.tlv(0x30, b"\x02\x01\x03" + ber.tlv(0xA0, mms_pdu))
    return data(_SESSION_DATA + ber.tlv(0x61, pdv))


def _session_param(pi, value):
    return bytes((pi, len(value))) + value


def associate_request(mms_initiate):
    """Session CONNECT + presentation CP + ACSE AARQ around an MMS initiate request."""
    external = ber.tlv(0x28, b"\x02\x01\x03" + ber.tlv(0xA0, mms_initiate))
    aarq = ber.tlv(0x60, (
        b"\xa1\x07\x06\x05\x28\xca\x22\x02\x03"   # application context 1.0.9506.2.3 (MMS)
        + b"\xa2\x07\x06\x05\x29\x01\x87\x67\x01"  # called AP title 1.1.1.999.1
        + b"\xa3\x03\x02\x01\x0c"                  # called AE qualifier 12
        + b"\xa6\x06\x06\x04\x29\x01\x87\x67"      # calling AP title 1.1.1.999
        + b"\xa7\x03\x02\x01\x0c"                  # calling AE qualifier 12
        + ber.tlv(0xBE, external)))
    user = ber.tlv(0x61, ber.tlv(0x30, b"\x02\x01\x01" + ber.tlv(0xA0, aarq)))
    contexts = ber.tlv(0xA4, (
        b"\x30\x0f\x02\x01\x01\x06\x04\x52\x01\x00\x01\x30\x04\x06\x02\x51\x01"       # ACSE, BER
        + b"\x30\x10\x02\x01\x03\x06\x05\x28\xca\x22\x02\x01\x30\x04\x06\x02\x51\x01"))  # MMS, BER
    normal = ber.tlv(0xA2, b"\x81\x04\x00\x00\x00\x01\x82\x04\x00\x00\x00\x01" + contexts + user)
    cp = ber.tlv(0x31, b"\xa0\x03\x80\x01\x01" + normal)
    params = (_session_param(0x05, b"\x13\x01\x00\x16\x01\x02")  # protocol options, version 2
              + _session_param(0x14, b"\x00\x02")                # duplex
              + _session_param(0x33, b"\x00\x01") + _session_param(0x34, b"\x00\x01"))
    if len(cp) < 0xFF:
        user_item = bytes((0xC1, len(cp))) + cp
    else:
        user_item = bytes((0xC1, 0xFF, len(cp) >> 8, len(cp) & 0xFF)) + cp
    body = params + user_item
    if len(body) < 0xFF:
        spdu = bytes((0x0D, len(body))) + body
    else:
        spdu = bytes((0x0D, 0xFF, len(body) >> 8, len(body) & 0xFF)) + body
    return data(spdu)


def _spdu_len(buf, s, e):
    if s >= e:
        raise RemoteProtocolError("session: truncated length")
    n = buf[s]
    if n == 0xFF:
        if s + 3 > e:
            raise RemoteProtocolError("session: truncated length")
        return (buf[s + 1] << 8) | buf[s + 2], s + 3
    return n, s + 1


def parse_accept(buf, s, e):
    """The MMS initiate response inside session ACCEPT / presentation CPA / ACSE AARE.

    Returns (start, end) of the MMS PDU; RemoteProtocolError when the
    association was refused or anything is malformed.
    """
    if s >= e:
        raise RemoteProtocolError("session: empty SPDU")
    kind = buf[s]
    if kind == 0x0C:
        raise RemoteProtocolError("session: connection refused by the peer")
    if kind == 0x19 or kind == 0x0A:
        raise RemoteProtocolError("session: peer aborted the connection")
    if kind != 0x0E:
        raise RemoteProtocolError("session: SPDU 0x%02x, expected ACCEPT" % kind)
    n, p = _spdu_len(buf, s + 1, e)
    if n > e - p:
        raise RemoteProtocolError("session: ACCEPT length past the end")
    end = p + n
    user = None
    while p < end:
        pi = buf[p]
        ln, q = _spdu_len(buf, p + 1, end)
        if ln > end - q:
            raise RemoteProtocolError("session: parameter 0x%02x past the end" % pi)
        if pi == 0xC1:
            user = (q, q + ln)
        p = q + ln
    if user is None:
        raise RemoteProtocolError("session: ACCEPT without user data")
    s, e = user
    # Presentation CPA-PPDU
    s, e = ber.expect(buf, s, e, 0x31, "presentation CPA")
    normal = None
    while s < e:
        t, vs, ve = ber.read_tlv(buf, s, e)
        if t == 0xA2:
            normal = (vs, ve)
        s = ve
    if normal is None:
        raise RemoteProtocolError("presentation: CPA without normal-mode parameters")
    s, e = normal
    pdv = None
    while s < e:
        t, vs, ve = ber.read_tlv(buf, s, e)
        if t == 0xA5:  # context definition result list: each result must be acceptance (0)
            q = vs
            while q < ve:
                _, rs, re_ = ber.read_tlv(buf, q, ve)
                if rs < re_:
                    t2, xs, xe = ber.read_tlv(buf, rs, re_)
                    if t2 == 0x80 and ber.uint(buf, xs, xe, "context result") != 0:
                        raise RemoteProtocolError("presentation: a context was rejected")
                q = re_
        elif t == 0x61:
            pdv = (vs, ve)
        s = ve
    if pdv is None:
        raise RemoteProtocolError("presentation: CPA without user data")
    ctx, s, e = _pdv(buf, pdv[0], pdv[1])
    if ctx != _CTX_ACSE:
        raise RemoteProtocolError("presentation: AARE in context %d" % ctx)
    # ACSE AARE
    s, e = ber.expect(buf, s, e, 0x61, "ACSE AARE")
    result = None
    info = None
    while s < e:
        t, vs, ve = ber.read_tlv(buf, s, e)
        if t == 0xA2:
            s2, e2 = ber.expect(buf, vs, ve, 0x02, "AARE result")
            result = ber.uint(buf, s2, e2, "AARE result")
        elif t == 0xBE:
            info = (vs, ve)
        s = ve
    if result != 0:
        raise RemoteProtocolError("ACSE: association rejected (result %s)" % result)
    if info is None:
        raise RemoteProtocolError("ACSE: AARE without user information")
    s, e = ber.expect(buf, info[0], info[1], 0x28, "ACSE user information")
    while s < e:
        t, vs, ve = ber.read_tlv(buf, s, e)
        if t == 0xA0:
            return vs, ve
        s = ve
    raise RemoteProtocolError("ACSE: no MMS PDU in the user information")


def _pdv(buf, s, e):
    s, e = ber.expect(buf, s, e, 0x30, "presentation PDV list")
    t, cs, ce = ber.read_tlv(buf, s, e)
    if t != 0x02:
        raise RemoteProtocolError("presentation: no context id")
    ctx = ber.uint(buf, cs, ce, "context id")
    t, vs, ve = ber.read_tlv(buf, ce, e)
    if t != 0xA0:
        raise RemoteProtocolError("presentation: user data is not single-ASN1-type")
    return ctx, vs, ve


def parse_data(buf, s, e):
    """(start, end) of the MMS PDU in a session DATA TRANSFER SPDU."""
    if e - s < 4:
        raise RemoteProtocolError("session: %d bytes" % (e - s))
    kind = buf[s]
    if kind == 0x19 or kind == 0x0A or kind == 0x09:
        raise RemoteProtocolError("session: peer ended the session (SPDU 0x%02x)" % kind)
    if kind != 0x01:
        raise RemoteProtocolError("session: SPDU 0x%02x is not data" % kind)
    # give tokens (01 len ...) then data transfer (01 len ...): skip both headers
    n1 = buf[s + 1]
    p = s + 2 + n1
    if p + 2 > e or buf[p] != 0x01:
        raise RemoteProtocolError("session: malformed data transfer")
    p += 2 + buf[p + 1]
    if p > e:
        raise RemoteProtocolError("session: data transfer header past the end")
    s2, e2 = ber.expect(buf, p, e, 0x61, "presentation user data")
    ctx, s3, e3 = _pdv(buf, s2, e2)
    if ctx != _CTX_MMS:
        raise RemoteProtocolError("presentation: data in context %d (ACSE release or abort)" % ctx)
    return s3, e3


class Framer:
    """Cuts COTP TPDUs out of TPKTs in one preallocated buffer; joins DT segments.

    ``feed(data)`` takes any bytes (or ``window``/``wrote`` take them
    straight from a link); ``next_tpdu()`` returns (code, buffer,
    start, end): for CC, DR, ER the TPDU header from its code octet, for
    DT a whole TSDU (the user data of every segment up to the last), or
    None when more bytes are needed. The window is valid until the next
    ``feed``.
    """

    def __init__(self, size):
        self.size = size
        self.buf = bytearray(size)   # raw TPKTs as they arrive
        self.sdu = bytearray(size)   # the TSDU being joined
        self.mv = memoryview(self.buf)
        self.n = 0
        self.start = 0
        self.sdu_n = 0

    def _compact(self):
        rest = self.n - self.start
        # the ranges may overlap: copy through bytes (rare: only when the buffer is full)
        self.buf[0:rest] = bytes(self.mv[self.start:self.n])
        self.n = rest
        self.start = 0

    def feed(self, data):
        k = len(data)
        if self.start and self.n + k > self.size:
            self._compact()
        if self.n + k > self.size:
            raise RemoteProtocolError("TPKT: more than %d bytes pending" % self.size)
        self.buf[self.n:self.n + k] = data
        self.n += k

    def window(self, most):
        """Free buffer after the bytes held, at most ``most`` bytes: read into it, then ``wrote(n)``.

        ``feed`` without the copy, for a link's ``recv_into``.
        """
        if self.start and self.n + most > self.size:
            self._compact()
        if self.n == self.size:
            raise RemoteProtocolError("TPKT: more than %d bytes pending" % self.size)
        return self.mv[self.n:min(self.size, self.n + most)]

    def wrote(self, n):
        """``n`` bytes were read into the last ``window``."""
        self.n += n

    def pending(self):
        return self.n - self.start

    def next_tpdu(self):
        while True:
            avail = self.n - self.start
            if avail < TPKT_HEADER:
                return None
            b = self.buf
            s = self.start
            if b[s] != 3 or b[s + 1] != 0:
                raise RemoteProtocolError("TPKT: version %d" % b[s])
            n = (b[s + 2] << 8) | b[s + 3]
            if n < 7 or n > self.size:
                raise RemoteProtocolError("TPKT: length %d" % n)
            if avail < n:
                return None
            self.start += n
            if self.start == self.n:
                self.start = self.n = 0
            li = b[s + 4]
            if li < 2 or 5 + li > n:
                raise RemoteProtocolError("COTP: header length %d" % li)
            code = b[s + 5] & 0xF0
            if code != DT:
                return code, b, s + 5, s + 5 + li
            if li != 2:
                raise RemoteProtocolError("COTP: DT header length %d" % li)
            eot = b[s + 6] & 0x80
            ps, pe = s + 7, s + n
            k = pe - ps
            if self.sdu_n + k > self.size:
                self.sdu_n = 0
                raise RemoteProtocolError("COTP: TSDU longer than %d" % self.size)
            self.sdu[self.sdu_n:self.sdu_n + k] = self.mv[ps:pe]
            self.sdu_n += k
            if eot:
                k = self.sdu_n
                self.sdu_n = 0
                return DT, self.sdu, 0, k
            # not the last segment: loop for the next TPKT

