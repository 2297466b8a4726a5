"""MMS (ISO 9506) PDUs and MMS Data, as IEC 61850-8-1 uses them.

Requests are built as bytes; what the server sends is parsed from a
window of a buffer into plain values. MMS Data decodes to Python values:
boolean -> bool, integer/unsigned -> int, floating-point -> float,
bit string -> ``Bits``, octet string -> bytes, visible/MMS string -> str,
UTC time -> ``UtcTime``, binary time -> ms since 1970, structure -> tuple,
array -> list, a data-access failure -> ``AccessError``.

    req = mms.read_request(7, "LD0", "MMXU1$MX$Hz")
    kind, invoke_id, s, e = mms.parse_pdu(buf, 0, len(buf))
"""

import struct

from . import ber
from .errors import RemoteProtocolError

MAX_DEPTH = 10  # nesting of structures and arrays we accept (and propose)

# Object classes of GetNameList
NAMED_VARIABLE = 0
NAMED_VARIABLE_LIST = 2
DOMAIN = 9

# What parse_pdu says a PDU is
CONFIRMED_RESPONSE = 1
CONFIRMED_ERROR = 2
UNCONFIRMED = 3
REJECT = 4
INITIATE_RESPONSE = 9
INITIATE_ERROR = 10
CONCLUDE_RESPONSE = 12
CONCLUDE_ERROR = 13

# Confirmed services (context tags inside a confirmed PDU)
SVC_GET_NAME_LIST = 0xA1
SVC_READ = 0xA4
SVC_WRITE = 0xA5

_EPOCH_1984 = 441763200  # 1984-01-01 in seconds since 1970


class Bits:
    """A BIT STRING: ``size`` bits, bit i of the string is ``value >> i & 1``."""

    def __init__(self, value, size):
        self.value = value
        self.size = size

    def bit(self, i):
        return (self.value >> i) & 1

    def __eq__(self, other):
        return isinstance(other, Bits) and other.value == self.value and other.size == self.size

    def __repr__(self):
        return "Bits(0x%x, %d)" % (self.value, self.size)


class UtcTime:
    """An MMS UtcTime: seconds since 1970, a 24-bit fraction, the time-quality octet."""

    def __init__(self, secs, frac, q):
        self.secs = secs
        self.frac = frac
        self.q = q

    @property
    def ms(self):
        return self.secs * 1000 + (self.frac * 1000 >> 24)

    def __eq__(self, other):
        return (isinstance(other, UtcTime) and other.secs == self.secs
                and other.frac == self.frac and other.q == self.q)

    def __repr__(self):
        return "UtcTime(%d, %d, 0x%02x)" % (self.secs, self.frac, self.q)


class AccessError:
    """A data-access failure in place of a value (a Read or Write result)."""

    def __init__(self, code):
        self.code = code

    def __eq__(self, other):
        return isinstance(other, AccessError) and other.code == self.code

    def __repr__(self):
        return "AccessError(%d)" % self.code


# ---------------------------------------------------------------- MMS Data

def _bits(buf, s, e):
    if e <= s:
        raise RemoteProtocolError("MMS bit string: empty")
    unused = buf[s]
    if unused > 7 or (unused and e - s == 1):
        raise RemoteProtocolError("MMS bit string: %d unused bits" % unused)
    if e - s > 9:
        raise RemoteProtocolError("MMS bit string: %d octets" % (e - s - 1))
    v = 0
    size = (e - s - 1) * 8 - unused
    i = 0
    for k in range(s + 1, e):
        b = buf[k]
        for j in range(8):
            if i >= size:
                break
            if b & (0x80 >> j):
                v |= 1 << i
            i += 1
    return Bits(v, size)


def _int(buf, s, e, signed):
    n = e - s
    if n == 0 or n > 9:
        raise RemoteProtocolError("MMS integer: %d octets" % n)
    v = 0
    for k in range(s, e):
        v = (v << 8) | buf[k]
    if signed and buf[s] & 0x80:
        v -= 1 << (8 * n)
    return v


def _text(buf, s, e, what):
    try:
        return str(bytes(buf[s:e]), "utf-8")
    except (UnicodeError, ValueError):
        raise RemoteProtocolError("MMS %s: not text" % what)


def decode_data(buf, s, e, depth=0):
    """One MMS Data value from the TLV at ``s`` (window ends at ``e``): (value, next_pos)."""
    tag, vs, ve = ber.read_tlv(buf, s, e)
    if tag == 0xA2 or tag == 0xA1:
        if depth >= MAX_DEPTH:
            raise RemoteProtocolError("MMS Data nested deeper than %d" % MAX_DEPTH)
        out = []
        p = vs
        while p < ve:
            v, p = decode_data(buf, p, ve, depth + 1)
            out.append(v)
        return (tuple(out) if tag == 0xA2 else out), ve
    n = ve - vs
    if tag == 0x87:  # floating-point: exponent width, then IEEE 754
        if n == 5 and buf[vs] == 8:
            return struct.unpack(">f", bytes(buf[vs + 1:ve]))[0], ve
        if n == 9 and buf[vs] == 11:
            return struct.unpack(">d", bytes(buf[vs + 1:ve]))[0], ve
        raise RemoteProtocolError("MMS float: %d octets" % n)
    if tag == 0x83:
        if n != 1:
            raise RemoteProtocolError("MMS boolean: %d octets" % n)
        return buf[vs] != 0, ve
    if tag == 0x84:
        return _bits(buf, vs, ve), ve
    if tag == 0x85:
        return _int(buf, vs, ve, True), ve
    if tag == 0x86:
        return _int(buf, vs, ve, False), ve
    if tag == 0x89:
        return bytes(buf[vs:ve]), ve
    if tag == 0x8A or tag == 0x90:
        return _text(buf, vs, ve, "string"), ve
    if tag == 0x91:
        if n != 8:
            raise RemoteProtocolError("MMS UTC time: %d octets" % n)
        secs = (buf[vs] << 24) | (buf[vs + 1] << 16) | (buf[vs + 2] << 8) | buf[vs + 3]
        frac = (buf[vs + 4] << 16) | (buf[vs + 5] << 8) | buf[vs + 6]
        return UtcTime(secs, frac, buf[vs + 7]), ve
    if tag == 0x8C:
        return _binary_time(buf, vs, ve), ve
    if tag == 0x80:  # a data-access error in a result list
        return AccessError(_int(buf, vs, ve, False)), ve
    raise RemoteProtocolError("MMS Data: unsupported tag 0x%x" % tag)


def _binary_time(buf, s, e):
    n = e - s
    if n != 4 and n != 6:
        raise RemoteProtocolError("MMS binary time: %d octets" % n)
    ms = (buf[s] << 24) | (buf[s + 1] << 16) | (buf[s + 2] << 8) | buf[s + 3]
    days = ((buf[s + 4] << 8) | buf[s + 5]) if n == 6 else 0
    return (_EPOCH_1984 + days * 86400) * 1000 + ms


def decode_list(buf, s, e):
    """A SEQUENCE OF Data (or AccessResult) as a list."""
    out = []
    while s < e:
        v, s = decode_data(buf, s, e)
        out.append(v)
    return out


def enc_bool(v):
    return b"\x83\x01\xff" if v else b"\x83\x01\x00"


def enc_unsigned(v):
    return ber.enc_uint(0x86, v)


def enc_integer(v):
    return ber.enc_int(0x85, v)


def enc_bits(value, size):
    """A BIT STRING of ``size`` bits, bit i taken from ``value >> i & 1``."""
    nbytes = (size + 7) // 8
    out = bytearray(nbytes + 1)
    out[0] = nbytes * 8 - size
    for i in range(size):
        if (value >> i) & 1:
            out[1 + i // 8] |= 0x80 >> (i % 8)
    return ber.tlv(0x84, bytes(out))


def enc_octets(b):
    return ber.tlv(0x89, bytes(b))


def enc_vstring(s):
    return ber.tlv(0x8A, s.encode())


# ---------------------------------------------------------------- requests

def _object_name(domain, item):
    if domain is None:
        return ber.tlv(0x80, item.encode())
    return ber.tlv(0xA1, ber.tlv(0x1A, domain.encode()) + ber.tlv(0x1A, item.encode()))


def _confirmed(invoke_id, service):
    return ber.tlv(0xA0, ber.enc_uint(0x02, invoke_id) + service)


def initiate_request(max_pdu, max_outstanding=5, nesting=MAX_DEPTH):
    # Parameter CBB: str1 str2 vnam valt vlis. Services: getNameList, read,
    # write, getVariableAccessAttributes, getNamedVariableListAttributes,
    # informationReport, conclude.
    cbb = enc_bits(0b10000111, 11)[2:]
    services = 0
    for bit in (1, 4, 5, 6, 12, 79, 83):
        services |= 1 << bit
    svc = enc_bits(services, 85)[2:]
    detail = ber.tlv(0x80, b"\x01") + ber.tlv(0x81, cbb) + ber.tlv(0x82, svc)
    body = (ber.enc_uint(0x80, max_pdu) + ber.enc_uint(0x81, max_outstanding)
            + ber.enc_uint(0x82, max_outstanding) + ber.enc_uint(0x83, nesting)
            + ber.tlv(0xA4, detail))
    return ber.tlv(0xA8, body)


def parse_initiate_response(buf, s, e):
    """The negotiated parameters: dict with max_pdu, outstanding, nesting."""
    out = {"max_pdu": 0, "outstanding": 1, "nesting": 0}
    names = {0x80: "max_pdu", 0x82: "outstanding", 0x83: "nesting"}
    while s < e:
        tag, vs, ve = ber.read_tlv(buf, s, e)
        if tag in names:
            out[names[tag]] = ber.uint(buf, vs, ve, "initiate parameter")
        s = ve
    if out["max_pdu"] < 64:
        raise RemoteProtocolError("initiate response: PDU size %d" % out["max_pdu"])
    return out


def get_name_list_request(invoke_id, object_class, domain=None, continue_after=None):
    scope = ber.tlv(0x80) if domain is None else ber.tlv(0x81, domain.encode())
    body = ber.tlv(0xA0, ber.enc_uint(0x80, object_class)) + ber.tlv(0xA1, scope)
    if continue_after is not None:
        body += ber.tlv(0x82, continue_after.encode())
    return _confirmed(invoke_id, ber.tlv(0xA1, body))


def _variable_list(names):
    out = b""
    for domain, item in names:
        out += ber.tlv(0x30, ber.tlv(0xA0, _object_name(domain, item)))
    return ber.tlv(0xA0, out)


def read_request(invoke_id, domain, item):
    """Read one named variable (``domain`` None for a VMD-specific name)."""
    return _confirmed(invoke_id, ber.tlv(0xA4, ber.tlv(0xA1, _variable_list(((domain, item),)))))


def write_request(invoke_id, domain, item, data):
    """Write one named variable; ``data`` is one encoded MMS Data (enc_*)."""
    body = _variable_list(((domain, item),)) + ber.tlv(0xA0, data)
    return _confirmed(invoke_id, ber.tlv(0xA5, body))


CONCLUDE_REQUEST = b"\x8b\x00"


# ---------------------------------------------------------------- responses

def parse_pdu(buf, s, e):
    """What an MMS PDU is: (kind, invoke_id or None, body_start, body_end).

    For a confirmed response the body is the service's TLV (its tag one of
    SVC_*); for an unconfirmed PDU, the unconfirmed service's TLV.
    """
    tag, vs, ve = ber.read_tlv(buf, s, e)
    if ve != e:
        raise RemoteProtocolError("MMS: %d bytes after the PDU" % (e - ve))
    if tag == 0xA1:
        t, is_, ie = ber.read_tlv(buf, vs, ve)
        if t != 0x02:
            raise RemoteProtocolError("MMS response: no invoke id")
        iid = ber.uint(buf, is_, ie, "invoke id")
        if ie >= ve:
            raise RemoteProtocolError("MMS response: no service")
        return CONFIRMED_RESPONSE, iid, ie, ve
    if tag == 0xA3:
        return UNCONFIRMED, None, vs, ve
    if tag == 0xA2:
        t, is_, ie = ber.read_tlv(buf, vs, ve)
        iid = ber.uint(buf, is_, ie, "invoke id") if t == 0x80 else None
        return CONFIRMED_ERROR, iid, ie if t == 0x80 else vs, ve
    if tag == 0xA4:
        iid = None
        if vs < ve:
            t, is_, ie = ber.read_tlv(buf, vs, ve)
            if t == 0x80:
                iid = ber.uint(buf, is_, ie, "invoke id")
        return REJECT, iid, vs, ve
    if tag == 0xA9:
        return INITIATE_RESPONSE, None, vs, ve
    if tag == 0xAA:
        return INITIATE_ERROR, None, vs, ve
    if tag == 0x8C:
        return CONCLUDE_RESPONSE, None, vs, ve
    if tag == 0x8D or tag == 0xAD:
        return CONCLUDE_ERROR, None, vs, ve
    raise RemoteProtocolError("MMS: unexpected PDU tag 0x%x" % tag)


def service_error(buf, s, e):
    """(class, code) of a ServiceError (its errorClass choice tag and value)."""
    try:
        t, vs, ve = ber.read_tlv(buf, s, e)
        if t == 0xA0 and vs < ve:
            t2, cs, ce = ber.read_tlv(buf, vs, ve)
            return t2 & 0x1F, ber.uint(buf, cs, ce, "error code")
    except RemoteProtocolError:
        pass
    return -1, -1


def parse_name_list(buf, s, e, keep=None):
    """A GetNameList response: (names, more_follows, last_name)."""
    s, e = ber.expect(buf, s, e, SVC_GET_NAME_LIST, "GetNameList response")
    names = []
    last = None
    more = True  # DEFAULT TRUE when absent
    seen = False
    while s < e:
        tag, vs, ve = ber.read_tlv(buf, s, e)
        if tag == 0xA0:
            seen = True
            p = vs
            while p < ve:
                t, ns, ne = ber.read_tlv(buf, p, ve)
                if t != 0x1A:
                    raise RemoteProtocolError("GetNameList: identifier tag 0x%x" % t)
                last = _text(buf, ns, ne, "identifier")
                if keep is None or keep(last):
                    names.append(last)
                p = ne
        elif tag == 0x81:
            if ve - vs != 1:
                raise RemoteProtocolError("GetNameList: moreFollows of %d octets" % (ve - vs))
            more = buf[vs] != 0
        s = ve
    if not seen:
        raise RemoteProtocolError("GetNameList: no list of identifiers")
    return names, more, last


def parse_read(buf, s, e):
    """A Read response: the list of results (values or AccessError)."""
    s, e = ber.expect(buf, s, e, SVC_READ, "Read response")
    while s < e:
        tag, vs, ve = ber.read_tlv(buf, s, e)
        if tag == 0xA1:
            return decode_list(buf, vs, ve)
        s = ve
    raise RemoteProtocolError("Read response: no results")


def parse_write(buf, s, e):
    """A Write response: one entry per variable, None for success or AccessError."""
    s, e = ber.expect(buf, s, e, SVC_WRITE, "Write response")
    out = []
    while s < e:
        tag, vs, ve = ber.read_tlv(buf, s, e)
        if tag == 0x81:
            out.append(None)
        elif tag == 0x80:
            out.append(AccessError(_int(buf, vs, ve, False)))
        else:
            raise RemoteProtocolError("Write response: tag 0x%x" % tag)
        s = ve
    return out


# ---------------------------------------------------------------- reports

# OptFlds bits (IEC 61850-8-1)
OPT_SEQ_NUM = 1
OPT_TIME_OF_ENTRY = 2
OPT_REASON = 3
OPT_DATA_SET = 4
OPT_DATA_REF = 5
OPT_BUF_OVFL = 6
OPT_ENTRY_ID = 7
OPT_CONF_REV = 8
OPT_SEGMENTATION = 9


class Report:
    """One IEC 61850 report from an InformationReport.

    ``members`` holds (index in the data set, reference or None, value,
    reason or None) for each included member. ``gap`` is set by the client:
    how many sequence numbers went missing before this report.
    """

    def __init__(self):
        self.rpt_id = None
        self.opt_flds = None
        self.seq_num = None
        self.time_of_entry = None
        self.data_set = None
        self.buf_ovfl = None
        self.entry_id = None
        self.conf_rev = None
        self.sub_seq_num = None
        self.more_segments = None
        self.inclusion = None
        self.members = []
        self.gap = 0

    def __repr__(self):
        return "Report(%s seq=%s members=%d gap=%d)" % (self.rpt_id, self.seq_num, len(self.members), self.gap)


def _take(vals, i, types, what):
    if i >= len(vals):
        raise RemoteProtocolError("report: %s missing" % what)
    v = vals[i]
    if not isinstance(v, types):
        raise RemoteProtocolError("report: %s of the wrong type" % what)
    return v


def parse_information_report(buf, s, e):
    """An unconfirmed PDU body: (variable list name or None, results list)."""
    tag, s, e = ber.read_tlv(buf, s, e)
    if tag != 0xA0:
        raise RemoteProtocolError("unconfirmed service 0x%x is not an InformationReport" % tag)
    name = None
    tag, vs, ve = ber.read_tlv(buf, s, e)
    if tag == 0xA1:  # variableListName
        t, ns, ne = ber.read_tlv(buf, vs, ve)
        if t == 0x80:
            name = _text(buf, ns, ne, "report name")
    elif tag != 0xA0:
        raise RemoteProtocolError("InformationReport: access specification 0x%x" % tag)
    tag, rs, re_ = ber.read_tlv(buf, ve, e)
    if tag != 0xA0:
        raise RemoteProtocolError("InformationReport: no access results")
    return name, decode_list(buf, rs, re_)


def decode_report(vals):
    """A Report from the access results of an InformationReport named "RPT"."""
    r = Report()
    r.rpt_id = _take(vals, 0, str, "RptID")
    opt = _take(vals, 1, Bits, "OptFlds")
    r.opt_flds = opt
    i = 2
    if opt.bit(OPT_SEQ_NUM):
        r.seq_num = _take(vals, i, int, "SeqNum")
        i += 1
    if opt.bit(OPT_TIME_OF_ENTRY):
        r.time_of_entry = _take(vals, i, int, "TimeOfEntry")
        i += 1
    if opt.bit(OPT_DATA_SET):
        r.data_set = _take(vals, i, str, "DatSet")
        i += 1
    if opt.bit(OPT_BUF_OVFL):
        r.buf_ovfl = _take(vals, i, bool, "BufOvfl")
        i += 1
    if opt.bit(OPT_ENTRY_ID):
        r.entry_id = _take(vals, i, bytes, "EntryID")
        i += 1
    if opt.bit(OPT_CONF_REV):
        r.conf_rev = _take(vals, i, int, "ConfRev")
        i += 1
    if opt.bit(OPT_SEGMENTATION):
        r.sub_seq_num = _take(vals, i, int, "SubSeqNum")
        r.more_segments = _take(vals, i + 1, bool, "MoreSegmentsFollow")
        i += 2
    inc = _take(vals, i, Bits, "Inclusion")
    r.inclusion = inc
    i += 1
    idx = [k for k in range(inc.size) if inc.bit(k)]
    n = len(idx)
    refs = None
    if opt.bit(OPT_DATA_REF):
        refs = vals[i:i + n]
        i += n
    values = vals[i:i + n]
    i += n
    reasons = None
    if opt.bit(OPT_REASON):
        reasons = vals[i:i + n]
        i += n
    if len(values) != n or (refs is not None and len(refs) != n) or (reasons is not None and len(reasons) != n):
        raise RemoteProtocolError("report: %d members included, fewer sent" % n)
    for k in range(n):
        ref = refs[k] if refs is not None else None
        if ref is not None and not isinstance(ref, str):
            raise RemoteProtocolError("report: data reference of the wrong type")
        why = reasons[k] if reasons is not None else None
        if why is not None and not isinstance(why, Bits):
            raise RemoteProtocolError("report: reason of the wrong type")
        r.members.append((idx[k], ref, values[k], why))
    return r
