"""IEEE C37.118.2 frames beyond what a stream's reader needs: the encoders a PMU (or a test) uses.

Configuration, data and header frames encoded, command and header frames
read, any frame read by type, the STAT and time-quality bits, and the
FRACSEC helpers. ``frames`` keeps what a board reads a stream with, and
finds every name here on first use (``frames.encode_config``).

    from lightnode.drivers.c37118 import codec, frames
    cfg_bytes = codec.encode_config(cfg)
    data_bytes = codec.encode_data(cfg, frame)
    codec.decode(cfg_bytes)             # a Config (Command, Header; a DataFrame given cfg)
"""

import struct

from .errors import LocalProtocolError, RemoteProtocolError
from .frames import (
    CFG1,
    CFG2,
    COMMAND,
    DATA,
    HEAD,
    HEADER,
    MAX_FRAME,
    NAME_LEN,
    STATION_LEN,
    SYNC_BYTE,
    VERSION,
    _common,
    _head,
    _seal,
    check_frame,
    command_size,
    decode_config,
    decode_data,
    encode_command_into,
    frame_type,
)

CMD_SEND_CFG3 = 6
CMD_EXTENDED = 8

# STAT bits of a PMU in a data frame (2011).
STAT_ERROR_MASK = 0xC000  # 00 good, 01 PMU error, 10 test mode, 11 PMU error, do not use
STAT_NOT_SYNC = 0x2000
STAT_BY_ARRIVAL = 0x1000
STAT_TRIGGER = 0x0800
STAT_CFG_CHANGE = 0x0400
STAT_DATA_MODIFIED = 0x0200
STAT_TIME_QUALITY_MASK = 0x01C0  # PMU time quality, 3 bits
STAT_UNLOCKED_MASK = 0x0030  # time since sync was lost, 2 bits
STAT_TRIGGER_REASON_MASK = 0x000F

# FRACSEC's top byte: time quality flags.
TQ_LEAP_NEGATIVE = 0x40
TQ_LEAP_OCCURRED = 0x20
TQ_LEAP_PENDING = 0x10
TQ_CODE_MASK = 0x0F  # 0 locked to UTC; 1-0xB within 10**(code-10) s; 0xF fault

INT_MISSING = -32768  # 0x8000: the integer format's "no value"


def sync_word(ftype, version=VERSION):
    return (SYNC_BYTE << 8) | (ftype << 4) | version


def split_time(fracsec):
    """FRACSEC as (time quality flags, fraction-of-second count)."""
    return (fracsec >> 24) & 0xFF, fracsec & 0xFFFFFF


def fracsec_of(t_us, time_base, quality=0):
    """(SOC, FRACSEC) of a time in microseconds since 1970, time quality flags in FRACSEC's top byte."""
    soc, us = divmod(t_us, 1000000)
    count = (us * time_base + 500000) // 1000000
    if count >= time_base:  # rounded up into the next second
        soc += 1
        count -= time_base
    return soc, ((quality & 0xFF) << 24) | count


# -- command frames -------------------------------------------------------------


class Command:
    """A command frame: CMD (and, for CMD_EXTENDED, the extended frame bytes)."""

    def __init__(self, idcode, cmd, soc=0, fracsec=0, ext=b"", version=VERSION):
        self.idcode = idcode
        self.cmd = cmd
        self.soc = soc
        self.fracsec = fracsec
        self.ext = bytes(ext)
        self.version = version

    def __eq__(self, other):
        return isinstance(other, Command) and (
            self.idcode, self.cmd, self.soc, self.fracsec, self.ext, self.version
        ) == (other.idcode, other.cmd, other.soc, other.fracsec, other.ext, other.version)

    def __repr__(self):
        return "Command(idcode=%d, cmd=%d)" % (self.idcode, self.cmd)


def encode_command(idcode, cmd, soc=0, fracsec=0, ext=b"", version=VERSION):
    buf = bytearray(command_size(ext))
    encode_command_into(buf, idcode, cmd, soc, fracsec, ext, version)
    return bytes(buf)


def decode_command(buf):
    if check_frame(buf) != COMMAND:
        raise RemoteProtocolError("not a command frame (type %d)" % frame_type(buf))
    if len(buf) < command_size():
        raise RemoteProtocolError("command frame of %d bytes has no CMD" % len(buf))
    idcode, soc, fracsec, version = _common(buf)
    cmd = (buf[HEAD] << 8) | buf[HEAD + 1]
    return Command(idcode, cmd, soc, fracsec, bytes(buf[HEAD + 2:len(buf) - 2]), version)


# -- header frames --------------------------------------------------------------


class Header:
    """A header frame: free text (ASCII) the PMU says about itself."""

    def __init__(self, idcode, text, soc=0, fracsec=0, version=VERSION):
        self.idcode = idcode
        self.text = bytes(text)
        self.soc = soc
        self.fracsec = fracsec
        self.version = version

    def __eq__(self, other):
        return isinstance(other, Header) and (
            self.idcode, self.text, self.soc, self.fracsec, self.version
        ) == (other.idcode, other.text, other.soc, other.fracsec, other.version)


def encode_header(h):
    size = HEAD + len(h.text) + 2
    buf = bytearray(size)
    _head(buf, HEADER, size, h.idcode, h.soc, h.fracsec, h.version)
    buf[HEAD:HEAD + len(h.text)] = h.text
    _seal(buf, size)
    return bytes(buf)


def decode_header(buf):
    if check_frame(buf) != HEADER:
        raise RemoteProtocolError("not a header frame (type %d)" % frame_type(buf))
    idcode, soc, fracsec, version = _common(buf)
    return Header(idcode, bytes(buf[HEAD:len(buf) - 2]), soc, fracsec, version)


# -- configuration frames (CFG-1, CFG-2) -----------------------------------------


def _pad(name, n):
    b = name.encode() if isinstance(name, str) else bytes(name)
    if len(b) > n:
        raise ValueError("name %r is longer than %d bytes" % (name, n))
    return b + b" " * (n - len(b))


def _pmu_cfg_size(p):
    return STATION_LEN + 10 + NAME_LEN * (p.phnmr + p.annmr + 16 * p.dgnmr) + 4 * (
        p.phnmr + p.annmr + p.dgnmr) + 4


def encode_config(cfg):
    if cfg.ftype not in (CFG1, CFG2):
        raise ValueError("only CFG-1 and CFG-2 share this layout")
    if not 0 < cfg.time_base <= 0xFFFFFF:
        raise ValueError("TIME_BASE %r is not 1-16777215" % (cfg.time_base,))
    if not -32767 <= cfg.data_rate <= 32767:
        raise ValueError("DATA_RATE %r is not a 16-bit rate" % (cfg.data_rate,))
    size = HEAD + 6 + sum(_pmu_cfg_size(p) for p in cfg.pmus) + 2 + 2
    buf = bytearray(size) if size <= MAX_FRAME else None
    if buf is None:
        raise LocalProtocolError("a configuration of %d bytes is over 65535" % size)
    _head(buf, cfg.ftype, size, cfg.idcode, cfg.soc, cfg.fracsec, cfg.version)
    struct.pack_into(">IH", buf, HEAD, ((cfg.tb_flags & 0xFF) << 24) | cfg.time_base, len(cfg.pmus))
    o = HEAD + 6
    for p in cfg.pmus:
        buf[o:o + STATION_LEN] = _pad(p.station, STATION_LEN)
        struct.pack_into(">HHHHH", buf, o + STATION_LEN, p.idcode, p.fmt, p.phnmr, p.annmr, p.dgnmr)
        o += STATION_LEN + 10
        for name in p.phnames + p.annames + p.dgnames:
            buf[o:o + NAME_LEN] = _pad(name, NAME_LEN)
            o += NAME_LEN
        for u in p.phunit:
            struct.pack_into(">I", buf, o, u & 0xFFFFFFFF)
            o += 4
        for u in p.anunit:
            struct.pack_into(">I", buf, o, u & 0xFFFFFFFF)
            o += 4
        for normal, valid in p.digunit:
            struct.pack_into(">HH", buf, o, normal, valid)
            o += 4
        struct.pack_into(">HH", buf, o, 1 if p.fnom == 50 else 0, p.cfgcnt)
        o += 4
    struct.pack_into(">h", buf, o, cfg.data_rate)
    _seal(buf, size)
    return bytes(buf)


# -- data frames ----------------------------------------------------------------


def encode_data_into(buf, cfg, frame):
    """Writes ``frame`` as ``cfg`` lays it out at the start of ``buf``; returns its size."""
    size = cfg.data_size
    if len(frame.pmus) != len(cfg.pmus):
        raise LocalProtocolError("%d PMU blocks for a configuration of %d" % (len(frame.pmus), len(cfg.pmus)))
    if len(buf) < size:
        raise ValueError("buffer of %d bytes, the frame needs %d" % (len(buf), size))
    _head(buf, DATA, size, frame.idcode, frame.soc, frame.fracsec, frame.version)
    o = HEAD
    for p, d in zip(cfg.pmus, frame.pmus):
        if len(d.ph) != 2 * p.phnmr or len(d.an) != p.annmr or len(d.dg) != p.dgnmr:
            raise LocalProtocolError("data for station %r does not fit its configuration" % p.station)
        try:
            struct.pack_into(p._fmt, buf, o, d.stat, *d.ph, d.freq, d.dfreq, *d.an, *d.dg)
        except (OverflowError, struct.error) as e:
            raise ValueError("a value does not fit its field: %s" % e)
        o += p.data_size
    _seal(buf, size)
    return size


def encode_data(cfg, frame):
    buf = bytearray(cfg.data_size)
    encode_data_into(buf, cfg, frame)
    return bytes(buf)


def decode(buf, cfg=None):
    """Any frame: a Command, Header, Config, or (given ``cfg``) DataFrame."""
    t = check_frame(buf)
    if t == COMMAND:
        return decode_command(buf)
    if t == HEADER:
        return decode_header(buf)
    if t in (CFG1, CFG2):
        return decode_config(buf)
    if t == DATA:
        if cfg is None:
            raise ValueError("a data frame needs its configuration to be read")
        return decode_data(buf, cfg)
    raise RemoteProtocolError("CFG-3 frames are not read by this driver")
