"""The simulator's devices, each served the real way and read back through our own drivers, with
values that agree with the one grid they stand on; a GPS-spoofed PMU's timestamps and phasor
angles move by the stated amounts; the SCADA master's bus carries what the tap needs."""

import math
import threading
import time

import pytest
from lightnode.drivers import link
from lightnode.drivers.c37118 import client as c37
from lightnode.drivers.iec61850 import client as mms
from lightnode.drivers.modbus import master, tap
from lightnode.simulator import devices, scenario
from lightnode.simulator.grid import Event, Grid

F0 = 50.0


def _setup(name="substation", events=None):
    sc = scenario.load(name)
    grid = Grid(sc.grid, sc.grid_events() if events is None else events, sc.seed)
    return sc, grid, devices.make_devices(sc, grid)


class Clock:
    """Simulation time that a test can jump: served devices read it."""

    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def _wrap(d):
    return (d + 180.0) % 360.0 - 180.0


def test_two_pmus_angle_difference_matches_the_flow():
    sc, grid, devs = _setup()
    ln = next(x for x in sc.grid.lines if x.name == "north-south")
    for t in (1.0, 20.0, 40.0):
        a, b = devs["pmu-north"].sample(t), devs["pmu-south"].sample(t)
        diff = _wrap(a[4] - b[4])  # VA.ang
        p = grid.state(t).lines["north-south"].p_mw
        assert math.radians(diff) / ln.x_pu * sc.grid.base_mva == pytest.approx(p, abs=2.0)
        assert a[1] == pytest.approx(grid.state(t).freq_hz, abs=0.003)  # one frequency everywhere
        assert b[1] == pytest.approx(a[1], abs=0.003)


def test_served_pmus_through_the_c37118_driver():
    sc, grid, devs = _setup()
    clock = Clock(10.0)
    got = {}
    with devs["pmu-north"].serve(clock=clock) as ea, devs["pmu-south"].serve(clock=clock) as eb:
        for name, ep in (("pmu-north", ea), ("pmu-south", eb)):
            pmu = c37.connect(ep.host, ep.port, ep.idcode, timeout_ms=3000)
            cfg = pmu.config()
            assert cfg.pmus[0].idcode == sc.device(name).params["idcode"]
            pmu.start()
            frames = []
            for _ in range(5):
                f = pmu.read()
                pc, d = cfg.pmus[0], f.pmus[0]
                frames.append((f.time_us(cfg.time_base), pc.freq_hz(d.freq),
                               math.degrees(pc.phasor(0, d.ph[0], d.ph[1])[1])))
            pmu.stop()
            pmu.close()
            got[name] = frames
    for name, frames in got.items():
        dev = devs[name]
        times = [t for t, _, _ in frames]
        assert all(b - a == 20_000 for a, b in zip(times, times[1:], strict=False))  # 50 frames/s
        k = round((times[0] - dev.t0_us) / 20_000)
        assert 10.0 * 50 <= k < 10.0 * 50 + 50  # the grid's present, not frame 0
        t_s = k / 50
        assert frames[0][1] == pytest.approx(dev.sample(t_s)[1], abs=1e-3)
        assert frames[0][2] == pytest.approx(dev.sample(t_s)[4], abs=0.01)
    # the two streams agree with each other the way the grid says
    by_t = {t: ang for t, _, ang in got["pmu-south"]}
    common = [(ang, by_t[t]) for t, _, ang in got["pmu-north"] if t in by_t]
    if common:
        a, b = common[0]
        t_s = (next(t for t, _, ang in got["pmu-north"] if ang == a) - devs["pmu-north"].t0_us) / 1e6
        p = grid.state(t_s).lines["north-south"].p_mw
        assert math.radians(_wrap(a - b)) / 0.08 * 100 == pytest.approx(p, abs=3.0)


def test_gps_step_and_drift_move_timestamps_and_angles_by_the_stated_amounts():
    sc, grid, devs = _setup()
    pmu = devs["pmu-north"]
    honest = devices.SimDevice(sc.device("pmu-north"), grid, pmu.t0_us, sc.seed)
    pmu.set_clock_error(1000.0, 0.0, at_s=5.0)  # a 1 ms step at 5 s
    for t in (2.0, 7.0):
        a, b = pmu.sample(t), honest.sample(t)
        step = 1000 if t >= 5 else 0
        assert pmu.clock_us(t) - honest.clock_us(t) == step
        assert _wrap(a[4] - b[4]) == pytest.approx(-360 * F0 * step * 1e-6, abs=1e-9)  # -18 deg
        assert a[1] == b[1]  # frequency is not moved by a clock offset
    drift = devices.SimDevice(sc.device("pmu-south"), grid, pmu.t0_us, sc.seed)
    base = devices.SimDevice(sc.device("pmu-south"), grid, pmu.t0_us, sc.seed)
    drift.apply_attack("gps_drift", 10.0, {"us_per_s": 50.0})
    for t, want_us in ((9.0, 0), (10.0, 0), (20.0, 500), (30.0, 1000)):
        assert drift.clock_us(t) - base.clock_us(t) == want_us
        # 50 us/s is 0.9 deg/s at 50 Hz
        assert _wrap(drift.sample(t)[4] - base.sample(t)[4]) == pytest.approx(
            -0.9 * max(0.0, t - 10.0), abs=1e-6)
    # the scenario's own attack lands in the PMU's clock at its time
    att = sc.attack("gps-step")
    east = devs["pmu-east"]
    assert east.clock_error_us(att.at_s - 0.02) == 0 and east.clock_error_us(att.at_s) == 1000


def test_spoofed_pmu_served_shows_the_step_in_its_frames():
    sc, grid, devs = _setup()
    pmu = devs["pmu-north"]
    pmu.set_clock_error(1000.0, 0.0, at_s=3.1)
    with pmu.serve(clock=Clock(3.0)) as ep:
        c = c37.connect(ep.host, ep.port, ep.idcode, timeout_ms=3000)
        cfg = c.config()
        c.start()
        got = []
        for _ in range(10):
            f = c.read()
            d = f.pmus[0]
            got.append((f.time_us(cfg.time_base), math.degrees(cfg.pmus[0].phasor(0, d.ph[0], d.ph[1])[1])))
        c.stop()
        c.close()
    dts = [b[0] - a[0] for a, b in zip(got, got[1:], strict=False)]
    assert sorted(dts)[-1] == 21_000 and dts.count(20_000) == len(dts) - 1  # one 1 ms jump
    i = dts.index(21_000)
    turn = _wrap(got[i + 1][1] - got[i][1])
    assert turn == pytest.approx(-18.0, abs=0.5)  # 1 ms at 50 Hz, plus a frame's slow drift


def test_meter_served_over_modbus_energy_follows_power():
    sc, grid, devs = _setup()
    meter = devs["meter-1"]
    pts = meter.map["points"]
    reads = [p["read"] for p in pts]
    clock = Clock(5.0)
    with meter.serve(clock=clock) as ep:
        m = master.Master(link.TcpLink(ep.host, ep.port), master.TCP, timeout_ms=2000)
        first = dict(zip([p["name"] for p in pts], m.read_points(ep.unit, reads), strict=True))
        clock.t = 35.0
        later = dict(zip([p["name"] for p in pts], m.read_points(ep.unit, reads), strict=True))
        m.close()
    want = meter.sample_named(5.0)
    assert first["F"] == pytest.approx(want["F"], abs=0.01)
    assert first["P"] == pytest.approx(want["P"], abs=1)
    assert first["E_import"] == want["E_import"] > 2**32  # a 64-bit counter, exact
    # energy increases by the integral of the power (30 s at about P watts)
    gained_wh = later["E_import"] - first["E_import"]
    assert gained_wh == pytest.approx(want["P"] * 30 / 3600, rel=0.3)
    assert gained_wh > 0 and later["E_net"] > first["E_net"]
    assert first["Breaker"] is True


def test_ev_charger_sessions_energy_and_tamper_over_modbus():
    sc, grid, devs = _setup()
    ev = devs["ev-1"]
    ev.set_tamper(20.0)
    charging = next(a for a, b, kw in ev._sessions)  # first session start
    pts = ev.map["points"]
    reads = [p["read"] for p in pts]
    clock = Clock(charging + 1.0)
    with ev.serve(clock=clock) as ep:
        m = master.Master(link.TcpLink(ep.host, ep.port), master.TCP, timeout_ms=2000)
        a = dict(zip([p["name"] for p in pts], m.read_points(ep.unit, reads), strict=True))
        clock.t = charging + 30.0
        b = dict(zip([p["name"] for p in pts], m.read_points(ep.unit, reads), strict=True))
        m.close()
    assert a["State"] == 1 and a["P"] > 0 and a["Sessions"] == 1
    assert b["E_session"] > a["E_session"] and b["E_total"] > a["E_total"]
    assert a["Tamper"] is (charging + 1.0 >= 20.0) and b["Tamper"] is True


def test_relay_trips_after_its_delay_on_a_fault_and_reports_it():
    sc = scenario.load("substation")
    fault_at = 10.0
    events = [Event(fault_at, "fault", {"feeder": "f-town", "current_a": 4000})]
    grid = Grid(sc.grid, events, sc.seed)
    devs = devices.make_devices(sc, grid)
    relay = devs["relay-town"]
    delay = next(f.trip_delay_s for f in sc.grid.feeders if f.name == "f-town")
    assert relay.sample(fault_at + delay - 0.04)[1] == 2.0  # still closed just before its delay
    assert relay.sample(fault_at + 0.1)[20] == pytest.approx(4000, rel=0.05)
    assert relay.sample(fault_at + delay + 0.1)[1] == 1.0  # open after it
    clock = Clock(fault_at - 1.0)
    with relay.serve(clock=clock) as ep:
        c = mms.MmsClient(ep.host, ep.port, timeout_ms=3000)
        c.associate()
        assert c.read("SIMMEAS/MMXU1.Hz.mag.f", "MX") == pytest.approx(relay.sample(clock.t)[30], abs=0.01)
        c.enable_report("SIMPROT/LLN0.BR.brcbEV01", gi=True)
        reports = []
        stop = time.monotonic() + 3.0
        moved = False
        while time.monotonic() < stop:
            r = c.wait_report(timeout_ms=500)
            if r is not None:
                reports.append(r)
            if not moved and len(reports) >= 1:
                clock.t = fault_at + delay + 0.2  # the relay has tripped and its breaker opened
                moved = True
        pos = c.read("SIMPROT/XCBR1.Pos.stVal", "ST")
        c.close()
    assert pos.value == _dbpos_bits_open(pos)
    changes = [v for r in reports for _, ref, v, why in r.members if why is not None]
    assert changes, "the breaker's opening went out as a buffered report"


def _dbpos_bits_open(bits):
    # Dbpos off (open) = 01 in IEC 61850's two-bit encoding, first bit first
    from lightnode.drivers.iec61850 import probe

    return next(v for v in range(4) if probe.DBPOS[v] == "off") if bits.size == 2 else None


def test_scada_master_polls_the_meter_and_the_tap_hears_it():
    sc = scenario.parse(_with_scada(), "<test>")
    grid = sc.make_grid()
    devs = devices.make_devices(sc, grid)
    scada = devs["scada-1"]
    with scada.serve(clock=Clock(3.0)) as ep:
        srv, poller, bus = ep.server
        deadline = time.monotonic() + 10
        while not poller.answers and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(ep.path, "rb", buffering=0) as line:
            import os

            os.set_blocking(line.fileno(), False)
            heard = bytearray()
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                try:
                    chunk = line.read(4096)
                except BlockingIOError:
                    chunk = None
                if chunk:
                    heard += chunk
                time.sleep(0.02)
    assert poller.answers, "the SCADA master got answers from the meter"
    assert len(heard) > 20 and bus.written[2] == b""  # the tap heard the bus and said nothing
    _ = tap  # the tap's decoder is exercised on these bytes by the runner's light nodes


def test_operator_console_signs_actions_the_registry_accepts():
    from lightnode import keys, registry

    sc = scenario.load("ukraine_2015")
    grid = sc.make_grid()
    devs = devices.make_devices(sc, grid)
    ops = devs["ops"]
    acts = ops.actions(0, sc.duration_s)
    kinds = [(a.params["action"], a.params.get("breaker")) for a in acts]
    assert kinds == [("login", None), ("control", "f-town"), ("control", "f-city")]
    reg = registry.open_registry(":memory:")
    admin_seed = bytes(range(32))
    reg.init_admin("root", keys.public_key(admin_seed), admin_seed)
    reg.add_operator(ops.operator, "operator", ops.public_key, reg.as_operator("root", admin_seed))
    for a in acts:
        op, action = reg.check_operator_action(ops.sign(a))
        assert op.name == "dispatcher1" and action.action == a.params["action"]
        hour = action.time // 3_600_000_000 % 24
        if "hour" in a.params:  # the stolen credential is used at its odd hour (UTC)
            assert hour == 3
        else:
            assert hour == ops.clock_us(a.at_s) // 3_600_000_000 % 24
    # the breakers the stolen credential opened are open in the grid
    s = grid.state(sc.attack("stolen-credential").at_s + 6.0)
    assert not s.feeders["f-town"].closed and not s.feeders["f-city"].closed


def test_sample_is_the_same_whatever_order_devices_are_read_in():
    sc, g1, d1 = _setup()
    _, g2, d2 = _setup()
    names = sorted(d1)
    ts = [0.0, 3.0, 3.02, 10.0, 40.0]
    a = {(n, t): d1[n].sample(t) for t in ts for n in names}
    b = {(n, t): d2[n].sample(t) for t in ts for n in reversed(names)}
    assert a == b


def test_served_devices_run_side_by_side_on_one_grid():
    sc, grid, devs = _setup()
    clock = Clock(12.0)
    results = {}

    def read_meter(ep):
        m = master.Master(link.TcpLink(ep.host, ep.port), master.TCP, timeout_ms=2000)
        results["F"] = m.read_value(ep.unit, "input", 12, "u16") / 100.0
        m.close()

    with devs["meter-1"].serve(clock=clock) as em, devs["pmu-east"].serve(clock=clock) as ep:
        th = threading.Thread(target=read_meter, args=(em,))
        th.start()
        c = c37.connect(ep.host, ep.port, ep.idcode, timeout_ms=3000)
        cfg = c.config()
        c.start()
        f = c.read()
        results["pmu"] = cfg.pmus[0].freq_hz(f.pmus[0].freq)
        c.stop()
        c.close()
        th.join(5)
    assert results["F"] == pytest.approx(results["pmu"], abs=0.011)  # two devices, one frequency


def _with_scada():
    import tomllib

    data = tomllib.loads(scenario.path_of("substation").read_text())
    data["name"] = "with_scada"
    data["device"].append({"name": "scada-1", "kind": "scada", "params": {"meter": "meter-1",
                                                                         "period_s": 0.02}})
    data["light_node"].append({"name": "ln-tap", "device": "scada-1"})
    return data
