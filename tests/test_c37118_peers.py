"""The C37.118 driver and the simulated PMU against peers we did not write.

- tshark's C37.118 dissector (Debian tshark 4.0) decodes a real session
  between our client and the PMU server (every byte both ways, written as a
  pcap) with no malformed PDU and a good CHK on each, and shows the values
  our decoder reads, for each data format.
- Our client reads the server from CPython and from inside the MicroPython
  unix port at the pico_w heap budget; every frame's timestamp equals the
  server's to the microsecond; the heap stays flat over 1,000 frames.
- Misbehaving servers (bad CRC, truncated, oversized, split, garbage,
  stalled, closed mid-frame, silent) give a clear driver error or a resync,
  never a crash or a wait past the timeout.

The ``synchrophasor`` package on PyPI (pyPMU, a third implementation) is
not available in this environment, so it is not used here.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import _c37118_support as sup
import pytest
from lightnode import micropython as mp
from lightnode import probe_c37118
from lightnode.drivers import link, pointmap
from lightnode.drivers.c37118 import client, errors, frames
from lightnode.errors import HarnessError
from lightnode.simulator import signals
from lightnode.simulator.pmu_server import FORMATS, PmuServer

T0 = 1767225600_000000
ROOT = Path(__file__).resolve().parents[1]


def _unix_port():
    try:
        mp.find_micropython()
        mp.find_mpy_cross()
    except HarnessError as e:
        if __import__("os").environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))


# -- tshark ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_tshark_decodes_a_real_session(fmt, tmp_path):
    sup.need("tshark")
    with PmuServer(fmt=fmt, speed=20, t0_us=T0, extras=True) as pmu:
        host, port = pmu.address
        rec = sup.RecordingLink(link.TcpLink(host, port, 2000))
        c = client.Connection(rec, pmu.idcode, 2000)
        cfg = c.config()
        assert c.header().startswith(b"lightnode")
        c.start()
        for _ in range(30):
            c.read()
        c.stop()
        c.close()
    events = sup.whole_frames(rec.events)
    pcap = tmp_path / ("%s.pcap" % fmt)
    sup.write_pcap(pcap, events, port)
    pdus, others = sup.tshark_pdus(pcap, port)
    assert others == [], others  # no malformed PDU, no expert note, nothing else dissected
    s2c = b"".join(d for fc, d in events if not fc)
    ours = []
    r = client.Session(pmu.idcode, 65535).reader
    r.feed(s2c)
    while (f := r.next_frame()) is not None:
        ours.append(bytes(f))
    commands = [d for fc, d in events if fc]
    assert len(pdus) == len(commands) + len(ours)
    by_type: dict[int, list] = {}
    for pdu in pdus:
        by_type.setdefault(int(pdu["synphasor.frtype"][0].get("show"), 16), []).append(pdu)
    assert [int(p["synphasor.command"][0].get("show"), 16) for p in by_type[frames.COMMAND]] == [
        frames.CMD_SEND_CFG2, frames.CMD_SEND_HDR, frames.CMD_DATA_ON, frames.CMD_DATA_OFF]
    assert all(p["synphasor.checksum.status"][0].get("show") == "1" for p in pdus)
    # the configuration as tshark read it
    (cpdu,) = by_type[frames.CFG2]
    assert int(cpdu["synphasor.conf.timebase"][0].get("show")) == cfg.time_base
    assert int(cpdu["synphasor.num_phasors"][0].get("show")) == 6
    assert int(cpdu["synphasor.rate_of_transmission"][0].get("show")) == 50
    names = [x.get("show").strip() for x in cpdu["synphasor.channel_name"]]
    assert names[:7] == list(signals.PHASORS) + ["P3PH_MW"]
    # every data frame: tshark's values are ours
    data = [w for w in ours if frames.frame_type(w) == frames.DATA]
    assert len(data) == len(by_type[frames.DATA]) >= 30
    for wire, pdu in zip(data, by_type[frames.DATA], strict=True):
        sup.check_against_tshark(cfg, wire, pdu)
    assert data[:30] == list(pmu.sent)[:30]


# -- our client, CPython -------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_client_cpython_exact(fmt):
    n = 200
    with PmuServer(fmt=fmt, speed=40, t0_us=T0 + 123_457, extras=(fmt == "int-rect")) as pmu:
        c = client.connect(*pmu.address, idcode=pmu.idcode, timeout_ms=2000)
        cfg = c.config()
        assert frames.encode_config(cfg) == pmu.cfg_bytes
        c.start()
        got = [c.read().copy() for _ in range(n)]
        c.stop()
        c.close()
        sent = list(pmu.sent)[:n]
    # timestamps: exactly the server's, frame by frame (TIME_BASE 10**6, fracsec = microseconds)
    assert [f.time_us(cfg.time_base) for f in got] == [pmu.frame_time_us(k) for k in range(n)]
    assert got[0].time_us(cfg.time_base) == T0 + 123_457
    # and every value: re-encoding what we read gives the server's bytes
    assert [frames.encode_data(cfg, f) for f in got] == sent
    # values in engineering units agree with the signal the server drew
    w = signals.pmu_window(seconds=10, rate=50, seed=pmu.seed, t0_us=T0 + 123_457)
    p = cfg.pmus[0]
    tol = {"float": (1e-6, 1e-6), "int": (2e-4, 1e-4)}["float" if "float" in fmt else "int"]
    for k in (0, 57, n - 1):
        d = got[k].pmus[0]
        assert abs(p.freq_hz(d.freq) - w.floats[signals.FREQ][k]) <= 0.0006
        for i, name in enumerate(signals.PHASORS):
            mag, ang = p.phasor(i, d.ph[2 * i], d.ph[2 * i + 1])
            true_mag = w.floats[signals.BY_NAME[name + ".mag"].id][k]
            true_ang = math.radians(w.floats[signals.BY_NAME[name + ".ang"].id][k])
            assert abs(mag - true_mag) <= tol[0] * true_mag + 0.02 * p.phasor_scale(i), (k, name)
            assert abs((ang - true_ang + math.pi) % (2 * math.pi) - math.pi) <= tol[1] + 1e-4, (k, name)


def test_point_map_matches_the_signal():
    with open(ROOT / "drivers" / "maps" / "pmu_c37118.json", "rb") as f:
        pm = pointmap.load(f)
    doc = json.loads((ROOT / "drivers" / "maps" / "pmu_c37118.json").read_text())
    assert doc["source"] == {"protocol": "c37118", "idcode": 7}
    assert len(doc["points"]) == len(signals.POINTS)
    for pt, spec in zip(doc["points"], signals.POINTS, strict=True):
        assert (pt["id"], pt["name"], pt["unit"], pt["resolution"], pt["order"]) == (
            spec.id, spec.name, spec.unit, spec.resolution, spec.order)
        assert pm.point(spec.id) is not None
        kind = pt["read"]["kind"]
        if spec.quantity in ("magnitude", "angle"):
            assert pt["read"]["index"] == signals.PHASORS.index(spec.name.split(".")[0])
            assert kind == ("phasor-mag" if spec.quantity == "magnitude" else "phasor-angle")
        else:
            assert kind == {"frequency": "freq", "rocof": "dfreq"}[spec.quantity]


# -- our client inside MicroPython -------------------------------------------------------


@pytest.mark.micropython
def test_client_micropython_1000_frames_heap_flat():
    _unix_port()
    n = 1000
    with PmuServer(fmt="float-polar", speed=40, t0_us=T0) as pmu:
        run = probe_c37118.run_device_read(*pmu.address, pmu.idcode, n, 3000, every=100, emit=False,
                                           board="pico_w")
        run.check()
        sent = list(pmu.sent)[:n]
    errs = [r for r in run.results if "error" in r]
    assert not errs, errs
    got = [r for r in run.results if "frame" in r]
    assert len(got) == n
    cfg = frames.decode_config(pmu.cfg_bytes)
    assert [frames.time_us(r["soc"], r["fracsec"], cfg.time_base) for r in got] == [
        pmu.frame_time_us(k) for k in range(n)]
    assert [(r["soc"], r["fracsec"]) for r in got] == [
        (frames.decode_data(w, cfg).soc, frames.decode_data(w, cfg).fracsec) for w in sent]
    heap = [r for r in run.results if "heap" in r]
    assert [h["after"] for h in heap] == list(range(0, n + 1, 100))
    figures = [h["heap"] for h in heap]
    rom = mp.rom_image().stat().st_size  # the ROMFS image sits in the heap too, as the board's flash
    print("pico_w heap after gc.collect, at frame 0 and every 100 frames (less the %d-byte ROM image): %s"
          % (rom, [f - rom for f in figures]))
    # flat after warm-up: from frame 100 on, within 64 bytes
    assert max(figures[1:]) - min(figures[1:]) <= 64, figures


@pytest.mark.micropython
def test_client_micropython_values_equal_cpython():
    _unix_port()
    with PmuServer(fmt="int-polar", speed=20, t0_us=T0, extras=True) as pmu:
        run = probe_c37118.run_device_read(*pmu.address, pmu.idcode, 20, 3000, emit=True)
        run.check()
        sent = list(pmu.sent)[:20]
    cfg = frames.decode_config(pmu.cfg_bytes)
    got = [r for r in run.results if "frame" in r]
    assert len(got) == 20
    for r, w in zip(got, sent, strict=True):
        f = frames.decode_data(w, cfg)
        d = f.pmus[0]
        assert (r["soc"], r["fracsec"], r["stat"], r["ph"], r["freq"], r["dfreq"], r["an"], r["dg"]) == (
            f.soc, f.fracsec, d.stat, d.ph, d.freq, d.dfreq, d.an, d.dg)


# -- misbehaving servers ---------------------------------------------------------------


def _session(faults, timeout_ms=800, **kw):
    pmu = PmuServer(speed=40, t0_us=T0, faults=faults, **kw).start()
    c = client.connect(*pmu.address, idcode=pmu.idcode, timeout_ms=timeout_ms)
    return pmu, c


def _read_through(c, n):
    """Reads n data frames, going on after each protocol error; returns (frames, errors)."""
    got, errs = [], []
    while len(got) < n:
        try:
            got.append(c.read().copy())
        except errors.RemoteProtocolError as e:
            errs.append(e)
            assert len(errs) < 20
    return got, errs


@pytest.mark.parametrize("fault,kind", [
    ({"bad_crc": [3, 9]}, errors.CrcError),
    ({"truncate": [4]}, errors.CrcError),
    ({"oversize": [5]}, errors.CrcError),
    ({"garbage": [6]}, errors.RemoteProtocolError),
])
def test_bad_frames_raise_once_then_resync(fault, kind):
    pmu, c = _session(fault)
    try:
        cfg = c.config()
        c.start()
        got, errs = _read_through(c, 20)
    finally:
        c.close()
        pmu.stop()
    bad = set(fault.get("bad_crc", []) + fault.get("truncate", []) + fault.get("oversize", []))
    assert errs and all(isinstance(e, kind) for e in errs), errs
    assert len(errs) == (2 if "bad_crc" in fault else 1)
    # every good frame came through, in order, with its own time (oversize swallows the next ones)
    times = [f.time_us(cfg.time_base) for f in got]
    expect = [pmu.frame_time_us(k) for k in range(40) if k not in bad]
    if "oversize" in fault:
        assert times[:5] == expect[:5] and times[5:] == [t for t in expect[5:] if t in times[5:]]
        assert len(times) == 20
    else:
        assert times == expect[:20]


def test_split_into_tiny_pieces():
    pmu, c = _session({"split": True})
    try:
        c.config()
        c.start()
        got = [c.read().copy() for _ in range(50)]
    finally:
        c.close()
        pmu.stop()
    cfg = frames.decode_config(pmu.cfg_bytes)
    assert [frames.encode_data(cfg, f) for f in got] == list(pmu.sent)[:50]


def test_stalled_peer_times_out_mid_stream():
    pmu, c = _session({"stall_after": 10}, timeout_ms=500)
    try:
        c.config()
        c.start()
        for _ in range(10):
            c.read()
        t0 = time.monotonic()
        with pytest.raises(link.LinkTimeout, match="no data frame within 500 ms"):
            c.read()
        assert time.monotonic() - t0 < 1.5
    finally:
        c.close()
        pmu.stop()


def test_silent_peer_times_out_on_config():
    pmu, c = _session({"silent": True}, timeout_ms=400)
    try:
        t0 = time.monotonic()
        with pytest.raises(link.LinkTimeout, match="no configuration frame within 400 ms"):
            c.config()
        assert time.monotonic() - t0 < 1.5
    finally:
        c.close()
        pmu.stop()


def test_peer_closes_mid_frame():
    pmu, c = _session({"close_mid_frame_after": 7})
    try:
        c.config()
        c.start()
        for _ in range(7):
            c.read()
        with pytest.raises(link.LinkClosed, match=r"mid-frame: \d+ of \d+ bytes"):
            c.read()
    finally:
        c.close()
        pmu.stop()


@pytest.mark.micropython
def test_faults_inside_micropython():
    _unix_port()
    for faults, expect in (({"bad_crc": [2]}, "CrcError"), ({"close_mid_frame_after": 3}, "LinkClosed"),
                           ({"stall_after": 3}, "LinkTimeout")):
        with PmuServer(speed=40, t0_us=T0, faults=faults) as pmu:
            t0 = time.monotonic()
            run = probe_c37118.run_device_read(*pmu.address, pmu.idcode, 10, 500, emit=False)
            run.check()
            took = time.monotonic() - t0
        errs = [r["error"] for r in run.results if "error" in r]
        assert len(errs) == 1 and errs[0].startswith(expect), (faults, errs)
        assert any("done" in r for r in run.results)
        assert took < 10
