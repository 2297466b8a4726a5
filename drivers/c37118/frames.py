"""IEEE C37.118.2 frames as a reader of one PMU stream needs them, with CRC-CCITT, every length checked.

Every frame is SYNC (0xAA, type, version), FRAMESIZE, IDCODE, SOC,
FRACSEC (time quality flags in the top byte, the fraction of second below),
a body, and CHK (CRC-CCITT over all bytes before it). Data frames are read
against their configuration frame (CFG-2, or CFG-1), which says each PMU's
FORMAT (integer or float, polar or rectangular) and channel counts.

This module is what a board loads: frame checks, command frames out,
configuration and data frames in. ``codec`` holds the rest of the
standard (encoders of configuration, data and header frames, command and
header frames read, STAT and time-quality bits); under CPython its names
are reachable here too (``frames.encode_config``), loaded on first use. On a board
(each module-level name costs heap) the app never touches them.

Decoded values are the numbers on the wire (``raw``), so that
``decode(encode(x)) == x`` holds for every format; a ``PmuConfig`` turns
them into Hz, Hz/s, volts, amperes and radians.

    from lightnode.drivers.c37118 import frames
    cmd = bytearray(frames.command_size())
    frames.encode_command_into(cmd, 7, frames.CMD_SEND_CFG2)
    cfg = frames.decode_config(cfg_bytes)
    f = frames.decode_data(data_bytes, cfg)
    f.soc, f.fracsec, f.pmus[0].stat, cfg.pmus[0].freq_hz(f.pmus[0].freq)
"""

import math
import struct
from array import array

from .errors import CrcError, LocalProtocolError, RemoteProtocolError

# SYNC: first byte 0xAA; second byte bit 7 reserved, bits 6-4 frame type, bits 3-0 version.
SYNC_BYTE = 0xAA
DATA = 0
HEADER = 1
CFG1 = 2
CFG2 = 3
COMMAND = 4
CFG3 = 5  # added in 2011, after COMMAND
VERSION_2005 = 1
VERSION_2011 = 2
VERSION = VERSION_2011

# Commands (C37.118.2-2011, table 15).
CMD_DATA_OFF = 1
CMD_DATA_ON = 2
CMD_SEND_HDR = 3
CMD_SEND_CFG1 = 4
CMD_SEND_CFG2 = 5

HEAD = 14  # SYNC, FRAMESIZE, IDCODE, SOC, FRACSEC
MIN_FRAME = HEAD + 2  # a header frame with no text
MAX_FRAME = 65535

# FORMAT bits of a PMU in a configuration frame.
FMT_POLAR = 0x1  # else rectangular
FMT_PHASOR_FLOAT = 0x2
FMT_ANALOG_FLOAT = 0x4
FMT_FREQ_FLOAT = 0x8

STATION_LEN = 16
NAME_LEN = 16


def _crc_table():
    t = array("H", bytes(512))
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t[i] = c & 0xFFFF
    return t


_CRC = _crc_table()


def crc_ccitt(buf, start=0, end=None, crc=0xFFFF):
    """CHK: CRC-CCITT, polynomial 0x1021, initial 0xFFFF, MSB first, no final XOR."""
    t = _CRC
    if end is None:
        end = len(buf)
    for i in range(start, end):
        crc = ((crc << 8) & 0xFF00) ^ t[((crc >> 8) ^ buf[i]) & 0xFF]
    return crc


def frame_type(buf):
    """The frame type (DATA, HEADER, CFG1, CFG2, CFG3, COMMAND) from SYNC's second byte."""
    return (buf[1] >> 4) & 0x7


def _check_sync(buf):
    if buf[0] != SYNC_BYTE:
        raise RemoteProtocolError("not a C37.118 frame: first byte 0x%02x, not 0xAA" % buf[0])
    b = buf[1]
    if b & 0x80 or (b >> 4) & 0x7 > CFG3 or not b & 0x0F:
        raise RemoteProtocolError("not a C37.118 frame: SYNC second byte 0x%02x" % b)


def check_frame(buf):
    """Checks SYNC, FRAMESIZE and CHK of one whole frame; returns its frame type."""
    n = len(buf)
    if n < MIN_FRAME:
        raise RemoteProtocolError("frame of %d bytes, shorter than the %d-byte minimum" % (n, MIN_FRAME))
    _check_sync(buf)
    size = (buf[2] << 8) | buf[3]
    if size != n:
        raise RemoteProtocolError("FRAMESIZE says %d bytes, the frame has %d" % (size, n))
    chk = (buf[n - 2] << 8) | buf[n - 1]
    crc = crc_ccitt(buf, 0, n - 2)
    if chk != crc:
        raise CrcError("bad CHK 0x%04x, computed 0x%04x" % (chk, crc))
    return (buf[1] >> 4) & 0x7


def _head(buf, ftype, size, idcode, soc, fracsec, version):
    if not 0 <= idcode <= 0xFFFF:
        raise ValueError("IDCODE %r is not 0-65535" % (idcode,))
    if not 0 <= soc <= 0xFFFFFFFF or not 0 <= fracsec <= 0xFFFFFFFF:
        raise ValueError("SOC and FRACSEC are 32-bit unsigned")
    if not 1 <= version <= 15:
        raise ValueError("version %r is not 1-15" % (version,))
    if size > MAX_FRAME:
        raise LocalProtocolError("a frame of %d bytes is over the 65535 FRAMESIZE allows" % size)
    struct.pack_into(">HHHII", buf, 0, (SYNC_BYTE << 8) | (ftype << 4) | version, size, idcode, soc, fracsec)


def _seal(buf, size):
    struct.pack_into(">H", buf, size - 2, crc_ccitt(buf, 0, size - 2))


def time_us(soc, fracsec, time_base):
    """Microseconds since 1970 of a frame's SOC and FRACSEC (exact when TIME_BASE divides 10**6 evenly)."""
    return soc * 1000000 + ((fracsec & 0xFFFFFF) * 1000000 + time_base // 2) // time_base


def _common(buf):
    """IDCODE, SOC, FRACSEC, version of a frame already checked."""
    idcode, soc, fracsec = struct.unpack_from(">HII", buf, 4)
    return idcode, soc, fracsec, buf[1] & 0x0F


# -- command frames -------------------------------------------------------------


def command_size(ext=b""):
    return HEAD + 2 + len(ext) + 2


def encode_command_into(buf, idcode, cmd, soc=0, fracsec=0, ext=b"", version=VERSION):
    """Writes a command frame at the start of ``buf`` (18 bytes without ``ext``); returns its size."""
    if not 0 <= cmd <= 0xFFFF:
        raise ValueError("CMD %r is not 0-65535" % (cmd,))
    size = command_size(ext)
    if len(buf) < size:
        raise ValueError("buffer of %d bytes, the command needs %d" % (len(buf), size))
    _head(buf, COMMAND, size, idcode, soc, fracsec, version)
    struct.pack_into(">H", buf, HEAD, cmd)
    if ext:
        buf[HEAD + 2:HEAD + 2 + len(ext)] = ext
    _seal(buf, size)
    return size


# -- configuration frames (CFG-1, CFG-2) -----------------------------------------


def _name(raw):
    s = bytes(raw).rstrip(b"\x00 ")
    try:
        return s.decode()
    except UnicodeError:
        return "".join(chr(c) if 32 <= c < 127 else "?" for c in s)


class PmuConfig:
    """One PMU's block of a configuration frame, and the conversions its FORMAT implies.

    ``phunit``: per phasor, top byte 0 voltage / 1 current, low 24 bits the
    integer format's scale in 10**-5 V or A per bit. ``anunit``: per analog,
    top byte its kind, low 24 bits a signed user scale. ``digunit``: per
    digital word, (normal status mask, valid inputs mask). ``fnom``: 50 or 60.
    """

    def __init__(self, station, idcode, fmt, phnames, annames, dgnames, phunit, anunit,
                 digunit, fnom=50, cfgcnt=0):
        self.station = station
        self.idcode = idcode
        self.fmt = fmt
        self.phnames = list(phnames)
        self.annames = list(annames)
        self.dgnames = list(dgnames)  # 16 per digital word
        self.phunit = list(phunit)
        self.anunit = list(anunit)
        self.digunit = [tuple(d) for d in digunit]
        self.fnom = fnom
        self.cfgcnt = cfgcnt
        self._layout()

    def _layout(self):
        n, a, d = len(self.phnames), len(self.annames), len(self.digunit)
        if len(self.phunit) != n or len(self.anunit) != a or len(self.dgnames) != 16 * d:
            raise ValueError("channel names and units disagree in number")
        if self.fnom not in (50, 60):
            raise ValueError("nominal frequency %r is not 50 or 60" % (self.fnom,))
        f = self.fmt
        if f & FMT_PHASOR_FLOAT:
            ph, phsize = "%df" % (2 * n) if n else "", 8
        else:
            ph, phsize = ("Hh" if f & FMT_POLAR else "hh") * n, 4
        fr, frsize = ("ff", 8) if f & FMT_FREQ_FLOAT else ("hh", 4)
        if f & FMT_ANALOG_FLOAT:
            an, ansize = "%df" % a if a else "", 4
        else:
            an, ansize = "%dh" % a if a else "", 2
        self.phnmr, self.annmr, self.dgnmr = n, a, d
        self._fmt = ">H" + ph + fr + an + ("%dH" % d if d else "")
        self.data_size = 2 + n * phsize + frsize + a * ansize + 2 * d

    @property
    def polar(self):
        return bool(self.fmt & FMT_POLAR)

    def freq_hz(self, raw):
        """FREQ in Hz: the float itself, or the nominal plus the integer's mHz deviation."""
        if self.fmt & FMT_FREQ_FLOAT:
            return raw
        return self.fnom + raw / 1000

    def dfreq_hz_s(self, raw):
        """DFREQ (ROCOF) in Hz/s: the float itself, or the integer / 100."""
        if self.fmt & FMT_FREQ_FLOAT:
            return raw
        return raw / 100

    def phasor_scale(self, i):
        """Volts or amperes per integer step of phasor ``i`` (PHUNIT's 10**-5 units)."""
        return (self.phunit[i] & 0xFFFFFF) * 1e-5

    def phasor(self, i, a, b):
        """Phasor ``i`` from its two wire numbers as (magnitude, angle in radians)."""
        f = self.fmt
        if not f & FMT_PHASOR_FLOAT:
            s = self.phasor_scale(i)
            if f & FMT_POLAR:
                return a * s, b * 1e-4
            a, b = a * s, b * s
        elif f & FMT_POLAR:
            return a, b
        return math.sqrt(a * a + b * b), math.atan2(b, a)

    def phasor_raw(self, i, mag, ang):
        """The two wire numbers of phasor ``i`` from (magnitude, angle in radians)."""
        f = self.fmt
        if f & FMT_POLAR:
            if f & FMT_PHASOR_FLOAT:
                return mag, ang
            return _int16u(mag / self.phasor_scale(i)), _int16(ang * 1e4)
        re, im = mag * math.cos(ang), mag * math.sin(ang)
        if f & FMT_PHASOR_FLOAT:
            return re, im
        s = self.phasor_scale(i)
        return _int16(re / s), _int16(im / s)

    def freq_raw(self, hz):
        return hz if self.fmt & FMT_FREQ_FLOAT else _int16((hz - self.fnom) * 1000)

    def dfreq_raw(self, hz_s):
        return hz_s if self.fmt & FMT_FREQ_FLOAT else _int16(hz_s * 100)

    def __eq__(self, other):
        return isinstance(other, PmuConfig) and all(
            getattr(self, k) == getattr(other, k)
            for k in ("station", "idcode", "fmt", "phnames", "annames", "dgnames", "phunit",
                      "anunit", "digunit", "fnom", "cfgcnt")
        )


def _int16(x):
    x = int(round(x))
    return -32767 if x < -32767 else 32767 if x > 32767 else x


def _int16u(x):
    x = int(round(x))
    return 0 if x < 0 else 65535 if x > 65535 else x


class Config:
    """A configuration frame (CFG-2, or CFG-1: the same layout)."""

    def __init__(self, idcode, pmus, time_base=1000000, data_rate=50, soc=0, fracsec=0,
                 ftype=CFG2, version=VERSION):
        self.idcode = idcode
        self.pmus = list(pmus)
        self.time_base = time_base  # low 24 bits; the top byte's flags are kept apart
        self.tb_flags = 0
        self.data_rate = data_rate  # >0 frames per second, <0 seconds per frame
        self.soc = soc
        self.fracsec = fracsec
        self.ftype = ftype
        self.version = version

    @property
    def data_size(self):
        """FRAMESIZE of this configuration's data frames."""
        return HEAD + sum(p.data_size for p in self.pmus) + 2

    def __eq__(self, other):
        return isinstance(other, Config) and all(
            getattr(self, k) == getattr(other, k)
            for k in ("idcode", "pmus", "time_base", "tb_flags", "data_rate", "soc", "fracsec",
                      "ftype", "version")
        )


def _need(n, o, want, what):
    if o + want > n:
        raise RemoteProtocolError("configuration frame ends inside %s (needs %d more bytes at %d of %d)"
                                  % (what, want, o, n))


def decode_config(buf):
    ftype = check_frame(buf)
    if ftype not in (CFG1, CFG2):
        raise RemoteProtocolError("not a CFG-1 or CFG-2 frame (type %d)" % ftype)
    n = len(buf) - 2
    idcode, soc, fracsec, version = _common(buf)
    _need(n, HEAD, 6, "TIME_BASE and NUM_PMU")
    tb, num = struct.unpack_from(">IH", buf, HEAD)
    if not tb & 0xFFFFFF:
        raise RemoteProtocolError("TIME_BASE is 0")
    o = HEAD + 6
    pmus = []
    for k in range(num):
        _need(n, o, STATION_LEN + 10, "PMU %d's counts" % k)
        station = _name(buf[o:o + STATION_LEN])
        pid, fmt, phn, ann, dgn = struct.unpack_from(">HHHHH", buf, o + STATION_LEN)
        o += STATION_LEN + 10
        names = phn + ann + 16 * dgn
        _need(n, o, NAME_LEN * names + 4 * (phn + ann + dgn) + 4, "PMU %d's names and units" % k)
        nm = [_name(buf[o + NAME_LEN * i:o + NAME_LEN * (i + 1)]) for i in range(names)]
        o += NAME_LEN * names
        units = struct.unpack_from(">%dI" % (phn + ann), buf, o) if phn + ann else ()
        o += 4 * (phn + ann)
        dig = [struct.unpack_from(">HH", buf, o + 4 * i) for i in range(dgn)]
        o += 4 * dgn
        fnom_bits, cfgcnt = struct.unpack_from(">HH", buf, o)
        o += 4
        if fmt & 0xFFF0:
            raise RemoteProtocolError("PMU %d: FORMAT 0x%04x has reserved bits set" % (k, fmt))
        pmus.append(PmuConfig(station, pid, fmt, nm[:phn], nm[phn:phn + ann], nm[phn + ann:],
                              units[:phn], units[phn:], dig, 50 if fnom_bits & 1 else 60, cfgcnt))
    _need(n, o, 2, "DATA_RATE")
    (rate,) = struct.unpack_from(">h", buf, o)
    if o + 2 != n:
        raise RemoteProtocolError("configuration frame has %d bytes after DATA_RATE" % (n - o - 2))
    cfg = Config(idcode, pmus, tb & 0xFFFFFF, rate, soc, fracsec, ftype, version)
    cfg.tb_flags = (tb >> 24) & 0xFF
    return cfg


# -- data frames ----------------------------------------------------------------


class PmuData:
    """One PMU's block of a data frame, as on the wire: STAT, phasors, FREQ, DFREQ, analogs, digitals.

    ``ph`` holds two numbers per phasor (magnitude and angle, or real and
    imaginary), flat; its PMU's ``PmuConfig.phasor`` says what they mean.
    """

    def __init__(self, phnmr=0, annmr=0, dgnmr=0):
        self.stat = 0
        self.ph = [0] * (2 * phnmr)
        self.freq = 0
        self.dfreq = 0
        self.an = [0] * annmr
        self.dg = [0] * dgnmr

    def copy(self):
        d = PmuData()
        d.stat, d.ph, d.freq, d.dfreq = self.stat, list(self.ph), self.freq, self.dfreq
        d.an, d.dg = list(self.an), list(self.dg)
        return d

    def __eq__(self, other):
        return isinstance(other, PmuData) and (
            self.stat, self.ph, self.freq, self.dfreq, self.an, self.dg
        ) == (other.stat, other.ph, other.freq, other.dfreq, other.an, other.dg)


class DataFrame:
    """A data frame: the stream's IDCODE, its own SOC and FRACSEC, one block per PMU."""

    def __init__(self, cfg=None, idcode=0, soc=0, fracsec=0, version=VERSION):
        self.idcode = cfg.idcode if cfg is not None else idcode
        self.soc = soc
        self.fracsec = fracsec  # top byte: time quality flags
        self.version = cfg.version if cfg is not None else version
        self.pmus = [PmuData(p.phnmr, p.annmr, p.dgnmr) for p in cfg.pmus] if cfg is not None else []

    def time_us(self, time_base):
        return time_us(self.soc, self.fracsec, time_base)

    @property
    def time_quality(self):
        return (self.fracsec >> 24) & 0xFF

    def copy(self):
        f = DataFrame(None, self.idcode, self.soc, self.fracsec, self.version)
        f.pmus = [p.copy() for p in self.pmus]
        return f

    def __eq__(self, other):
        return isinstance(other, DataFrame) and (
            self.idcode, self.soc, self.fracsec, self.version, self.pmus
        ) == (other.idcode, other.soc, other.fracsec, other.version, other.pmus)


def decode_data(buf, cfg, into=None):
    """A data frame read against ``cfg``; ``into`` (a DataFrame made for ``cfg``) is filled in place."""
    if check_frame(buf) != DATA:
        raise RemoteProtocolError("not a data frame (type %d)" % frame_type(buf))
    if len(buf) != cfg.data_size:
        raise RemoteProtocolError("data frame of %d bytes, its configuration says %d"
                                  % (len(buf), cfg.data_size))
    f = into if into is not None else DataFrame(cfg)
    f.idcode, f.soc, f.fracsec, f.version = _common(buf)
    o = HEAD
    for p, d in zip(cfg.pmus, f.pmus):
        v = struct.unpack_from(p._fmt, buf, o)
        d.stat = v[0]
        ph = d.ph
        k = 1
        for i in range(len(ph)):
            ph[i] = v[k]
            k += 1
        d.freq = v[k]
        d.dfreq = v[k + 1]
        k += 2
        an = d.an
        for i in range(len(an)):
            an[i] = v[k]
            k += 1
        dg = d.dg
        for i in range(len(dg)):
            dg[i] = v[k]
            k += 1
        o += p.data_size
    return f


def __getattr__(name):
    # the rest of the standard (``codec``) is found here too, loaded on first use:
    # a board that only reads a stream never loads it
    from . import codec

    try:
        return getattr(codec, name)
    except AttributeError:
        raise AttributeError("module %r has no attribute %r" % (__name__, name)) from None
