"""Fuzz the C37.118 parsers of remote bytes: any input parses or raises the driver's own error.

Bounded (a few hundred examples each) so the suite stays quick; the seeds
are valid frames of every type, mutated, truncated, spliced and split.
Round trips of random configurations and data frames go with them.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode.drivers.c37118 import client, errors, frames, stream
from lightnode.simulator.pmu_server import PmuServer

_PMU = PmuServer(t0_us=1767225600_000000, extras=True)
_PMU._sock.close()  # only its frames are wanted here
CFG = _PMU.cfg
SEEDS = [
    _PMU.cfg_bytes,
    _PMU.cfg1_bytes,
    _PMU.header_bytes,
    _PMU.data_frame(0),
    _PMU.data_frame(1),
    frames.encode_command(7, frames.CMD_DATA_ON),
    frames.encode_command(7, frames.CMD_EXTENDED, ext=b"\x00\x01\x02"),
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reseal(b: bytearray) -> bytes:
    """Fix the CHK, so mutations reach the parser behind the CRC check."""
    if len(b) >= 4:
        crc = frames.crc_ccitt(b, 0, len(b) - 2)
        b[-2], b[-1] = crc >> 8, crc & 0xFF
    return bytes(b)


@st.composite
def mutated(draw):
    b = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(b) - 1))
        b[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(b)))
    b = b[:cut] if draw(st.booleans()) else b
    if draw(st.booleans()) and len(b) >= 4:  # keep FRAMESIZE honest sometimes
        b[2], b[3] = len(b) >> 8, len(b) & 0xFF
    return _reseal(b) if draw(st.booleans()) else bytes(b)


remote = st.one_of(st.binary(max_size=600), mutated())


@FUZZ
@given(remote)
def test_decode_raises_only_driver_errors(data):
    for fn in (lambda b: frames.decode(b, CFG), frames.decode_config, frames.decode_header,
               frames.decode_command, lambda b: frames.decode_data(b, CFG)):
        try:
            fn(data)
        except errors.C37118Error:
            pass


@FUZZ
@given(st.lists(remote, max_size=6), st.integers(1, 64), st.integers(16, 1024))
def test_stream_and_session_raise_only_driver_errors(chunks, piece, max_frame):
    blob = b"".join(chunks)
    s = client.Session(7, max_frame=max(max_frame, 16))
    r = stream.FrameReader(max(max_frame, 16))
    for i in range(0, len(blob), piece):
        part = blob[i:i + piece]
        while part:
            part = part[s.receive_data(part):]
            part2 = blob[i:i + piece]
            r.feed(part2[: r.room()])
            for _ in range(200):
                try:
                    ev = s.next_event()
                except errors.C37118Error:
                    continue
                if ev is None:
                    break
            for _ in range(200):
                try:
                    f = r.next_frame()
                except errors.RemoteProtocolError:
                    continue
                if f is None:
                    break
                assert frames.crc_ccitt(f) == 0
    assert r.pending <= len(r.buf)


names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ ", min_size=1, max_size=16).map(str.strip).filter(bool)


@st.composite
def configs(draw):
    pmus = []
    for _ in range(draw(st.integers(1, 3))):
        n, a, d = draw(st.integers(0, 4)), draw(st.integers(0, 3)), draw(st.integers(0, 2))
        pmus.append(frames.PmuConfig(
            draw(names), draw(st.integers(1, 65534)), draw(st.integers(0, 15)),
            [draw(names) for _ in range(n)], [draw(names) for _ in range(a)],
            [draw(names) for _ in range(16 * d)],
            [draw(st.integers(0, 1)) << 24 | draw(st.integers(1, 0xFFFFFF)) for _ in range(n)],
            [draw(st.integers(0, 0xFFFFFFFF)) for _ in range(a)],
            [(draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))) for _ in range(d)],
            draw(st.sampled_from([50, 60])), draw(st.integers(0, 0xFFFF))))
    cfg = frames.Config(draw(st.integers(1, 65534)), pmus, draw(st.integers(1, 0xFFFFFF)),
                        draw(st.integers(-32767, 32767)), draw(st.integers(0, 2**32 - 1)),
                        draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([frames.CFG1, frames.CFG2])),
                        draw(st.sampled_from([1, 2])))
    return cfg


f32 = st.floats(width=32, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(configs(), st.data())
def test_round_trip(cfg, data):
    wire = frames.encode_config(cfg)
    back = frames.decode_config(wire)
    assert back == cfg and frames.encode_config(back) == wire
    f = frames.DataFrame(cfg, soc=data.draw(st.integers(0, 2**32 - 1)),
                         fracsec=data.draw(st.integers(0, 2**32 - 1)))
    for p, d in zip(cfg.pmus, f.pmus, strict=True):
        d.stat = data.draw(st.integers(0, 0xFFFF))
        if p.fmt & frames.FMT_PHASOR_FLOAT:
            d.ph = [data.draw(f32) for _ in d.ph]
        elif p.polar:
            d.ph = [data.draw(st.integers(0, 65535) if i % 2 == 0 else st.integers(-32768, 32767))
                    for i in range(len(d.ph))]
        else:
            d.ph = [data.draw(st.integers(-32768, 32767)) for _ in d.ph]
        fv = f32 if p.fmt & frames.FMT_FREQ_FLOAT else st.integers(-32768, 32767)
        d.freq, d.dfreq = data.draw(fv), data.draw(fv)
        d.an = [data.draw(f32 if p.fmt & frames.FMT_ANALOG_FLOAT else st.integers(-32768, 32767)) for _ in d.an]
        d.dg = [data.draw(st.integers(0, 0xFFFF)) for _ in d.dg]
    wire = frames.encode_data(cfg, f)
    assert len(wire) == cfg.data_size
    assert frames.decode_data(wire, back) == f
    # and through a session, byte stream split at random
    s = client.Session(cfg.idcode, max_frame=65535)
    s.receive_data(frames.encode_config(cfg) + wire)
    assert s.next_event() == cfg
    assert s.next_event() == f


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 999_999), st.sampled_from([1_000_000, 1000, 50, 16_777_215]))
def test_timestamps_exact(soc, us, time_base):
    t = soc * 1_000_000 + us
    s, fr = frames.fracsec_of(t, time_base)
    back = frames.time_us(s, fr, time_base)
    if time_base == 1_000_000:
        assert back == t
    else:
        assert abs(back - t) <= math.ceil(1_000_000 / time_base / 2) + 1
