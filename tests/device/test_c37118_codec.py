# IEEE C37.118.2 frames: golden bytes for each frame type, encoded and
# decoded, fed whole and one byte at a time through the stream reader and
# the client session. Runs under pytest and inside MicroPython.
#
# The PUBLISHED frames are the worked examples of IEEE C37.118-2005
# (Annex: IDCODE 7734, "Station A", a 30 frames/s PMU with 4 integer
# rectangular phasors, 3 float analogs and 1 digital word, 60 Hz), as
# reproduced with their CHK in the pyPMU project's frame tests
# (github.com/iicsys/pypmu, tests/validate_frames.py). The others are
# laid out field by field from C37.118.2-2011 (6.2-6.6) and also checked by
# tshark's dissector in tests/test_c37118_peers.py.
from binascii import unhexlify

from lightnode.drivers.c37118 import client, codec, errors, frames, stream

PORTS = ("unix", "wasm")


def _h(s):
    return unhexlify(s.replace(" ", ""))


# -- published examples (C37.118-2005, version 1) ---------------------------------

PUB_CFG2 = _h(
    "aa3101c61e36448527f056071098000f4240000153746174696f6e2041202020202020201e360004000400030001564120"
    "20202020202020202020202020564220202020202020202020202020205643202020202020202020202020202049312020"
    "202020202020202020202020414e414c4f4731202020202020202020414e414c4f4732202020202020202020414e414c4f"
    "4733202020202020202020425245414b4552203120535441545553425245414b4552203220535441545553425245414b45"
    "52203320535441545553425245414b4552203420535441545553425245414b4552203520535441545553425245414b4552"
    "203620535441545553425245414b4552203720535441545553425245414b4552203820535441545553425245414b455220"
    "3920535441545553425245414b4552204120535441545553425245414b4552204220535441545553425245414b45522043"
    "20535441545553425245414b4552204420535441545553425245414b4552204520535441545553425245414b4552204620"
    "535441545553425245414b4552204720535441545553000df847000df847000df8470100b2d00000000101000001020000"
    "010000ffff00000016001ed5d1"
)
PUB_DATA = _h(
    "aa01 0034 1e36 44853600 000041b1 0000"  # SYNC data v1, 52 bytes, IDCODE 7734, SOC, FRACSEC, STAT
    "392b 0000 e36a ce7c e36a 3183 0444 0000"  # 4 integer rectangular phasors
    "09c4 0000"  # FREQ +2500 mHz from nominal, DFREQ 0
    "42c80000 447a0000 461c4000"  # analogs 100.0, 1000.0, 10000.0
    "3c12 d43f"  # digital word, CHK
)
PUB_HEADER = _h("aa1100271e36448560300f0bbfd048656c6c6f2049276d20486561646572204672616d652e17cc")
PUB_COMMAND = _h("aa41 0012 1e36 44856030 0f0bbfd0 0002 ce00")  # turn on transmission


def test_published_config():
    cfg = frames.decode_config(PUB_CFG2)
    assert (cfg.idcode, cfg.soc, cfg.fracsec, cfg.time_base, cfg.data_rate, cfg.version) == (
        7734, 1149577200, 0x56071098, 1000000, 30, 1)
    assert codec.split_time(cfg.fracsec) == (0x56, 463000)  # leap second pending, negative, quality 6
    p = cfg.pmus[0]
    assert (p.station, p.idcode, p.fmt, p.fnom, p.cfgcnt) == ("Station A", 7734, 0x0004, 60, 22)
    assert p.phnames == ["VA", "VB", "VC", "I1"]
    assert p.annames == ["ANALOG1", "ANALOG2", "ANALOG3"]
    assert p.dgnames[0] == "BREAKER 1 STATUS" and p.dgnames[15] == "BREAKER G STATUS"
    assert p.phunit == [915527, 915527, 915527, 0x0100B2D0]
    assert p.anunit == [1, 0x01000001, 0x02000001]
    assert p.digunit == [(0, 0xFFFF)]
    assert cfg.data_size == len(PUB_DATA)
    assert codec.encode_config(cfg) == PUB_CFG2


def test_published_data():
    cfg = frames.decode_config(PUB_CFG2)
    f = frames.decode_data(PUB_DATA, cfg)
    d = f.pmus[0]
    assert (f.idcode, f.soc, f.fracsec) == (7734, 1149580800, 16817)
    assert d.stat == 0
    assert d.ph == [14635, 0, -7318, -12676, -7318, 12675, 1092, 0]
    assert (d.freq, d.dfreq, d.an, d.dg) == (2500, 0, [100.0, 1000.0, 10000.0], [0x3C12])
    assert cfg.pmus[0].freq_hz(d.freq) == 62.5
    mag, ang = cfg.pmus[0].phasor(0, d.ph[0], d.ph[1])
    assert abs(mag - 14635 * 9.15527) < 1e-6 and ang == 0
    assert codec.encode_data(cfg, f) == PUB_DATA
    assert f.time_us(cfg.time_base) == 1149580800016817


def test_published_header_and_command():
    h = codec.decode_header(PUB_HEADER)
    assert (h.idcode, h.soc, h.text) == (7734, 1149591600, b"Hello I'm Header Frame.")
    assert codec.encode_header(h) == PUB_HEADER
    c = codec.decode_command(PUB_COMMAND)
    assert (c.idcode, c.cmd, c.soc, c.fracsec, c.version) == (7734, frames.CMD_DATA_ON, 1149591600, 0x0F0BBFD0, 1)
    assert codec.encode_command(7734, 2, 1149591600, 0x0F0BBFD0, version=1) == PUB_COMMAND


# -- our frames, version 2 (2011) --------------------------------------------------

CMD_CFG2 = _h("aa42 0012 0007 00000000 00000000 0005 f739")  # send CFG-2 to IDCODE 7
CMD_ON = _h("aa42 0012 0007 00000000 00000000 0002")
CMD_OFF = _h("aa42 0012 0007 00000000 00000000 0001")

# One PMU, FORMAT 0x000b: float polar phasors, float FREQ/DFREQ, integer analog.
CFG_FLOAT = _h(
    "aa32 0176 0007 6955b900 00000000"  # SYNC CFG-2 v2, 374 bytes, IDCODE 7, SOC 2026-01-01, FRACSEC
    "000f4240 0001"  # TIME_BASE 10**6, NUM_PMU 1
    "4c4e20504d5520312020202020202020 0007 000b 0002 0001 0001"  # STN, IDCODE, FORMAT, PHNMR, ANNMR, DGNMR
    "56412020202020202020202020202020 49412020202020202020202020202020"  # VA, IA
    "54454d50202020202020202020202020"  # TEMP
    "42524b30202020202020202020202020 42524b31202020202020202020202020"
    "42524b32202020202020202020202020 42524b33202020202020202020202020"
    "42524b34202020202020202020202020 42524b35202020202020202020202020"
    "42524b36202020202020202020202020 42524b37202020202020202020202020"
    "42524b38202020202020202020202020 42524b39202020202020202020202020"
    "42524b31302020202020202020202020 42524b31312020202020202020202020"
    "42524b31322020202020202020202020 42524b31332020202020202020202020"
    "42524b31342020202020202020202020 42524b31352020202020202020202020"
    "00000000 01000000"  # PHUNIT: voltage, current (scale unused in float)
    "01000064"  # ANUNIT: rms, scale 100
    "0000 0003"  # DIGUNIT: normal 0, valid inputs 0..1
    "0001 0003"  # FNOM 50 Hz, CFGCNT 3
    "0032 7fc4"  # DATA_RATE 50, CHK
)
DATA_FLOAT = _h(
    "aa02 002e 0007 6955b900 05004e20"  # SOC, FRACSEC: quality 5, 20000 us
    "0a01"  # STAT: trigger, data modified, reason 1
    "4794d920 3f000000 43fa0000 be800000"  # VA 76210.25 V at 0.5 rad, IA 500 A at -0.25 rad
    "42484000 be000000"  # FREQ 50.0625 Hz, DFREQ -0.125 Hz/s
    "fff4 0002 d845"  # analog -12, digital 0x0002, CHK
)

# FORMAT 0x0001: integer polar phasors, integer FREQ/DFREQ.
CFG_INTPOLAR = _h(
    "aa32005e00086955b90000000000000f424000014c4e20504d5520322020202020202020"
    "00080001000200000000564120202020202020202020202020204941202020202020202020202020202000000ba1"
    "01000019000100000032acc6"
)
DATA_INTPOLAR = _h(
    "aa02 001e 0008 6955b901 000ef420 2010"  # FRACSEC 980000, STAT: not in sync, unlocked 10-100 s
    "63e5 e152 7530 7ab8"  # VA 25573 x 2977e-5 V at -0.7854 rad; IA 30000 x 25e-5 A at 3.1416 rad
    "ffe7 000c d9a0"  # FREQ -25 mHz, DFREQ 0.12 Hz/s, CHK
)

# CFG-1, version 1, FORMAT 0x0006: float rectangular phasors, float analog, integer FREQ; 60 Hz.
CFG1_FLOATRECT = _h(
    "aa21005e00090000000000000000000003e800014c4e20504d55203320202020202020200009000600010001"
    "00005631202020202020202020202020202050202020202020202020202020202020000000000000000000000001fffbb5b2"
)
DATA_FLOATRECT = _h("aa010022000900000001000003e700003fc00000c00000000078fffd49742400713c")


def _pieces(data, whole):
    if whole:
        yield data
        return
    for i in range(len(data)):
        yield data[i:i + 1]


def _read_all(data, whole, max_frame=1024):
    r = stream.FrameReader(max_frame)
    out = []
    for piece in _pieces(data, whole):
        while piece:
            piece = piece[r.feed(piece):]  # what did not fit goes in after the frames are out
            while True:
                f = r.next_frame()
                if f is None:
                    break
                out.append(bytes(f))
    return out, r


def test_commands():
    assert codec.encode_command(7, frames.CMD_SEND_CFG2) == CMD_CFG2
    for cmd, wire in ((frames.CMD_DATA_ON, CMD_ON), (frames.CMD_DATA_OFF, CMD_OFF)):
        got = codec.encode_command(7, cmd)
        assert got[:16] == wire
        assert codec.decode_command(got).cmd == cmd
    s = client.Session(7)
    assert s.command(frames.CMD_SEND_CFG2) == CMD_CFG2
    ext = codec.encode_command(7, codec.CMD_EXTENDED, ext=b"\x01\x02\x03")
    c = codec.decode_command(ext)
    assert (c.cmd, c.ext, len(ext)) == (8, b"\x01\x02\x03", 21)


def test_float_polar():
    cfg = frames.decode_config(CFG_FLOAT)
    assert codec.encode_config(cfg) == CFG_FLOAT
    p = cfg.pmus[0]
    assert (p.station, p.fmt, p.phnmr, p.annmr, p.dgnmr, p.fnom, p.cfgcnt) == ("LN PMU 1", 0x0B, 2, 1, 1, 50, 3)
    assert (p.phunit, p.anunit, p.digunit) == ([0, 0x01000000], [0x01000064], [(0, 3)])
    assert (cfg.time_base, cfg.data_rate, cfg.ftype, cfg.version) == (1000000, 50, frames.CFG2, 2)
    f = frames.decode_data(DATA_FLOAT, cfg)
    d = f.pmus[0]
    assert (f.soc, f.fracsec, f.time_quality) == (1767225600, 0x05004E20, 5)
    assert f.time_us(cfg.time_base) == 1767225600020000
    assert d.stat == codec.STAT_TRIGGER | codec.STAT_DATA_MODIFIED | 1
    assert d.ph == [76210.25, 0.5, 500.0, -0.25]
    assert (d.freq, d.dfreq, d.an, d.dg) == (50.0625, -0.125, [-12], [2])
    assert p.phasor(1, d.ph[2], d.ph[3]) == (500.0, -0.25)
    assert (p.freq_hz(d.freq), p.dfreq_hz_s(d.dfreq)) == (50.0625, -0.125)
    assert codec.encode_data(cfg, f) == DATA_FLOAT


def test_int_polar():
    cfg = frames.decode_config(CFG_INTPOLAR)
    assert codec.encode_config(cfg) == CFG_INTPOLAR
    p = cfg.pmus[0]
    assert (p.fmt, p.phunit, p.polar) == (1, [0x0BA1, 0x01000019], True)
    f = frames.decode_data(DATA_INTPOLAR, cfg)
    d = f.pmus[0]
    assert (f.soc, f.fracsec) == (1767225601, 980000)
    assert d.stat == codec.STAT_NOT_SYNC | 0x10
    assert (d.ph, d.freq, d.dfreq) == ([25573, -7854, 30000, 31416], -25, 12)
    mag, ang = p.phasor(0, d.ph[0], d.ph[1])
    assert abs(mag - 25573 * 2977e-5) < 1e-6 and abs(ang + 0.7854) < 1e-9
    assert abs(p.freq_hz(d.freq) - 49.975) < 1e-9 and abs(p.dfreq_hz_s(d.dfreq) - 0.12) < 1e-9
    assert p.phasor_raw(0, mag, ang) == (25573, -7854)
    assert codec.encode_data(cfg, f) == DATA_INTPOLAR


def test_cfg1_float_rect():
    cfg = frames.decode_config(CFG1_FLOATRECT)
    assert (cfg.ftype, cfg.version, cfg.time_base, cfg.data_rate) == (frames.CFG1, 1, 1000, -5)
    assert codec.encode_config(cfg) == CFG1_FLOATRECT
    p = cfg.pmus[0]
    assert (p.fmt, p.fnom) == (0x06, 60)
    f = frames.decode_data(DATA_FLOATRECT, cfg)
    d = f.pmus[0]
    assert (d.ph, d.freq, d.dfreq, d.an) == ([1.5, -2.0], 120, -3, [1000000.0])
    assert f.time_us(cfg.time_base) == 1999000
    mag, ang = p.phasor(0, 1.5, -2.0)
    assert abs(mag - 2.5) < 1e-9 and abs(ang + 0.9272952180016122) < 1e-9
    assert abs(p.freq_hz(120) - 60.12) < 1e-9
    assert codec.encode_data(cfg, f) == DATA_FLOATRECT


def test_crc():
    assert frames.crc_ccitt(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    for wire in (PUB_CFG2, PUB_DATA, PUB_HEADER, PUB_COMMAND, CFG_FLOAT, DATA_FLOAT):
        assert frames.crc_ccitt(wire) == 0  # CHK appended MSB first: the CRC over all is 0


def test_time_helpers():
    assert codec.fracsec_of(1767225600020000, 1000000, 5) == (1767225600, 0x05004E20)
    assert codec.fracsec_of(1767225600999999, 1000, 0) == (1767225601, 0)  # rounds into the next second
    assert frames.time_us(1, 0x0F0001F4, 1000) == 1500000


def test_stream_whole_and_byte_by_byte():
    seq = [CFG_FLOAT, DATA_FLOAT, PUB_HEADER, DATA_FLOAT, CMD_CFG2, PUB_CFG2, PUB_DATA]
    blob = b"".join(seq)
    for whole in (True, False):
        got, r = _read_all(blob, whole)
        assert got == seq, whole
        assert (r.dropped, r.errors, r.pending) == (0, 0, 0)


def test_stream_small_buffer_wraps():
    # a buffer barely larger than the biggest frame: frames straddle the compaction point
    seq = [CFG_FLOAT] + [DATA_FLOAT, DATA_INTPOLAR] * 20
    r = stream.FrameReader(len(CFG_FLOAT) + 7)
    blob = b"".join(seq)
    out = []
    i = 0
    while i < len(blob):
        i += r.feed(blob[i:i + 33])
        while True:
            f = r.next_frame()
            if f is None:
                break
            out.append(bytes(f))
    assert out == seq


def _expect(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def test_stream_bad_crc_resyncs():
    bad = bytearray(DATA_FLOAT)
    bad[20] ^= 0x40
    blob = CFG_FLOAT + bytes(bad) + DATA_FLOAT + DATA_FLOAT
    for whole in (True, False):
        r = stream.FrameReader(1024)
        out, errs = [], []
        for piece in _pieces(blob, whole):
            r.feed(piece)
            while True:
                try:
                    f = r.next_frame()
                except errors.RemoteProtocolError as e:
                    errs.append(e)
                    continue
                if f is None:
                    break
                out.append(bytes(f))
        assert out == [CFG_FLOAT, DATA_FLOAT, DATA_FLOAT]
        assert len(errs) == 1 and isinstance(errs[0], errors.CrcError)
        assert r.dropped == len(DATA_FLOAT)


def test_stream_bad_sizes():
    r = stream.FrameReader(128)
    r.feed(CFG_FLOAT[:4])  # 374 bytes will not fit a 128-byte reader
    e = _expect(errors.RemoteProtocolError, r.next_frame)
    assert "374" in str(e)
    r = stream.FrameReader(128)
    r.feed(DATA_FLOAT)  # first frame fine: in step
    assert bytes(r.next_frame()) == DATA_FLOAT
    r.feed(_h("aa02 0004 0000"))  # FRAMESIZE 4
    _expect(errors.RemoteProtocolError, r.next_frame)
    r.feed(DATA_FLOAT)
    assert bytes(r.next_frame()) == DATA_FLOAT
    # a FRAMESIZE past the end: the reader waits, and says what it waits for
    r.feed(DATA_FLOAT[:30])
    assert r.next_frame() is None and r.want() == (30, 46)


def test_frame_checks():
    _expect(errors.CrcError, frames.decode_config, CFG_FLOAT[:-1] + b"\x00")
    _expect(errors.RemoteProtocolError, frames.decode_config, CFG_FLOAT[:100])
    _expect(errors.RemoteProtocolError, frames.decode_data, DATA_FLOAT, frames.decode_config(CFG_INTPOLAR))
    _expect(errors.RemoteProtocolError, frames.decode_config, DATA_FLOAT)
    # NUM_PMU says 2 where there is one: reads stop at the frame's end
    bad = bytearray(CFG_INTPOLAR)
    bad[19] = 2
    bad[-2:] = b"\x00\x00"
    chk = frames.crc_ccitt(bad, 0, len(bad) - 2)
    bad[-2], bad[-1] = chk >> 8, chk & 0xFF
    e = _expect(errors.RemoteProtocolError, frames.decode_config, bytes(bad))
    assert "PMU 1" in str(e)


def test_encode_rejects():
    cfg = frames.decode_config(CFG_INTPOLAR)
    f = frames.DataFrame(cfg)
    f.pmus[0].ph = [1, 2]
    _expect(errors.LocalProtocolError, codec.encode_data, cfg, f)
    _expect(ValueError, codec.encode_command, 70000, 1)


def test_session_events_byte_by_byte():
    blob = DATA_FLOAT + CFG_FLOAT + DATA_FLOAT + PUB_HEADER + DATA_INTPOLAR + DATA_FLOAT
    for whole in (True, False):
        s = client.Session(7)
        events = []
        for piece in _pieces(blob, whole):
            s.receive_data(piece)
            while True:
                ev = s.next_event()
                if ev is None:
                    break
                events.append(ev.copy() if isinstance(ev, frames.DataFrame) else ev)
        kinds = [type(e).__name__ for e in events]
        assert kinds == ["Config", "DataFrame", "DataFrame"], kinds
        # data before the configuration, and other streams' frames, are passed over
        assert s.skipped == 3
        assert events[1] == events[2] == frames.decode_data(DATA_FLOAT, events[0])


def test_session_reuses_one_frame():
    s = client.Session(7)
    s.receive_data(CFG_FLOAT + DATA_FLOAT + DATA_FLOAT)
    s.next_event()
    a = s.next_event()
    b = s.next_event()
    assert a is b is s.frame
