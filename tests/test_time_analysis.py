"""The full node's time analysis (lightnode.node.analysis): GPS spoofing, timestamp steps, clock brackets, odd hours.

Signed PMU readings of three or four PMUs on one segment, made here from a
small grid: one frequency for all (a damped random walk around 50 Hz), bus
angles that move with a slowly varying power flow (a few degrees over
minutes), measurement noise on every angle, 5 s windows of 50 frames/s,
each window arriving at the node 50 ms to 1.5 s after it closes (network
jitter, so windows of different PMUs arrive out of step). A spoofed PMU's
clock error dt goes into its angles as 360·f·dt, as a spoofed receiver
puts it there.

What the tests hold the analysis to (docs/time.md, "What the full node flags"):

- a 50 us/s drift on one PMU is flagged within 30 s of its onset (node time);
- a 1 ms step on one PMU is flagged within 10 s (two 5 s windows);
- 10 minutes of a normal day (fed in seconds) raise no flag of any kind.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _node_support import NodeProcess, make_registry, mosquitto
from lightnode import keys, readings, registry, wire
from lightnode.firmware.ln import wire as spec
from lightnode.ledger.store import (
    ANALYSIS_FLAGS,
    FLAG_ANGLE_DRIFT,
    FLAG_CLOCK_BRACKET,
    FLAG_OPERATOR_ODD_HOUR,
    FLAG_TIME_STEP,
    open_store,
)
from lightnode.node.analysis import AnalysisConfig, Analyzer, PointRoles, parse_hours

SEGMENT = "feeder-9"
RATE = 50
PERIOD = 1_000_000 // RATE
WINDOW_S = 5
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, a whole second: frames on the GPS grid
MAPS = Path(__file__).resolve().parent.parent / "drivers" / "maps"


@dataclass
class Spoof:
    at_s: float
    step_us: float = 0.0
    drift_us_s: float = 0.0

    def error_us(self, t_s: float) -> float:
        if t_s < self.at_s:
            return 0.0
        return self.step_us + self.drift_us_s * (t_s - self.at_s)


@dataclass
class Grid:
    """Frequency and bus angles of a small meshed grid, deterministic per seed."""

    buses: int
    seed: int = 1
    f: list[float] = field(default_factory=list)
    phase: list[float] = field(default_factory=list)  # common rotation, deg

    def __post_init__(self) -> None:
        rnd = random.Random(self.seed)
        self.rnd = rnd
        self.base = [rnd.uniform(-25.0, 5.0) for _ in range(self.buses)]
        # flow swings: a few degrees over minutes (at most ~0.1 deg/s, as a load ramp moves them)
        self.swing = [(rnd.uniform(1.0, 4.0), rnd.uniform(120, 400), rnd.uniform(0, 6.28))
                      for _ in range(self.buses)]
        self.walk = [0.0] * self.buses

    def run(self, seconds: float) -> None:
        """Frequency and the common rotation at every frame."""
        rnd, dt = self.rnd, 1.0 / RATE
        df, ddf, ph = 0.0, 0.0, 0.0
        for _ in range(int(seconds * RATE) + RATE):
            # damped second-order response to random load: ~20 mHz deviations, ROCOF ~ 10 mHz/s
            ddf += (-2 * 0.7 * 0.1 * ddf - 0.01 * df) * dt + rnd.gauss(0, 0.0015)
            df += ddf * dt
            self.f.append(50.0 + df)
            self.phase.append(ph)
            ph += 360.0 * df * dt

    def angle(self, bus: int, i: int) -> float:
        t = i / RATE
        a, period, p = self.swing[bus]
        return self.base[bus] + a * math.sin(2 * math.pi * t / period + p)


@dataclass
class Pmu:
    n: int
    bus: int
    spoof: Spoof | None = None
    seed: bytes = b""
    device_id: bytes = b""
    seq: int = 0
    prev: bytes = bytes(32)

    def __post_init__(self) -> None:
        self.seed = bytes([self.n + 1]) * 32
        self.device_id = b"PMU" + self.n.to_bytes(5, "big")
        self.signer = wire.Signer(self.seed, self.device_id, SEGMENT)

    @property
    def public_key(self) -> bytes:
        return keys.public_key(self.seed)


def pmu_windows(grid: Grid, pmus: list[Pmu], seconds: float, noise_deg: float = 0.005,
                jitter: tuple[float, float] = (0.05, 1.5), seed: int = 3):
    """Every PMU's signed 5 s windows, as (arrival us, data), in arrival order."""
    grid.run(seconds)
    rnd = random.Random(seed)
    out = []
    frames = WINDOW_S * RATE
    for w in range(int(seconds // WINDOW_S)):
        for p in pmus:
            times, freq, ang = [], [], []
            for k in range(frames):
                i = w * frames + k
                t_s = i / RATE
                f = grid.f[i]
                a = grid.phase[i] + grid.angle(p.bus, i) + rnd.gauss(0, noise_deg)
                if p.spoof is not None:
                    a -= 360.0 * f * p.spoof.error_us(t_s) * 1e-6
                times.append(T0 + i * PERIOD)
                freq.append(round(f * 1000))
                ang.append(round(((a + 180.0) % 360.0 - 180.0) * 100))
            series = readings.Series(times, PERIOD, [readings.Point(1, 1, freq),
                                                     readings.Point(4, 2, ang)])
            closed = times[-1] + PERIOD
            data, tx_id = p.signer.make(p.seq, p.prev, (closed, spec.TQ_NTP, 2000),
                                        spec.KIND_READINGS, readings.encode_body([series]))
            p.seq, p.prev = p.seq + 1, tx_id
            out.append((closed + int(rnd.uniform(*jitter) * 1e6), data))
    out.sort(key=lambda x: x[0])
    return out


def feed(an: Analyzer, stream, block_s: float = 1.0):
    """The node's part: commit in arrival order, tick, cut a block every block_s, cosign the one before."""
    flags, index, next_cut, last_cut, clock = [], 0, None, None, None
    for arrival, data in stream:
        while clock is not None and clock + 100_000 < arrival:  # the node's tick runs meanwhile
            clock += 100_000
            flags += an.tick(clock)
        clock = arrival
        while next_cut is not None and next_cut <= arrival:
            flags += an.on_checkpoint(an.chain, index, next_cut, next_cut)
            an.set_lower_reference(last_cut)  # the one before is cosigned by now
            last_cut, next_cut = next_cut, next_cut + int(block_s * 1e6)
        if next_cut is None:
            next_cut = arrival + int(block_s * 1e6)
        tx = wire.decode(data)
        flags += an.observe(tx, index, arrival, arrival)
        flags += an.tick(arrival)
        index += 1
    return flags


def onset_us(at_s: float) -> int:
    return T0 + int(at_s * 1e6)


# -- GPS spoofing ----------------------------------------------------------------------------


@pytest.mark.parametrize("n_pmus", [3, 4])
def test_a_50us_per_s_drift_is_flagged_within_30_s(n_pmus):
    pmus = [Pmu(i, i) for i in range(n_pmus)]
    pmus[1].spoof = Spoof(at_s=122.0, drift_us_s=50.0)
    an = Analyzer(SEGMENT, pmu_points=PointRoles(None, maps=[]))
    flags = feed(an, pmu_windows(Grid(n_pmus, seed=n_pmus), pmus, 240))
    drift = [f for f in flags if f.kind == FLAG_ANGLE_DRIFT]
    assert drift, (an.stats, flags)
    assert {f.device for f in flags} == {pmus[1].device_id}, flags
    first = drift[0]
    delay = (first.time - onset_us(122.0)) / 1e6
    assert 0 < delay <= 30, (delay, first.detail)
    assert "deg/s" in first.detail and "threshold 0.300" in first.detail
    assert an.stats["insufficient_neighbours"] == 0 and an.stats["bad_bodies"] == 0


@pytest.mark.parametrize("sign", [1, -1])
def test_a_1ms_step_is_flagged_within_two_windows(sign):
    pmus = [Pmu(i, i) for i in range(3)]
    pmus[2].spoof = Spoof(at_s=93.3, step_us=sign * 1000.0)
    an = Analyzer(SEGMENT, pmu_points=PointRoles(None, maps=[]))
    flags = feed(an, pmu_windows(Grid(3, seed=7), pmus, 180))
    steps = [f for f in flags if f.kind == FLAG_ANGLE_DRIFT]
    assert steps and {f.device for f in flags} == {pmus[2].device_id}, flags
    delay = (steps[0].time - onset_us(93.3)) / 1e6
    assert 0 < delay <= 2 * WINDOW_S, (delay, steps[0].detail)
    assert "angle step %s" % ("-" if sign > 0 else "+") in steps[0].detail
    # 18 deg at 50 Hz, told as a clock step of about 1000 us
    assert "us at 50 Hz" in steps[0].detail


def test_ten_minutes_of_a_normal_day_raise_no_flag():
    pmus = [Pmu(i, i) for i in range(4)]
    an = Analyzer(SEGMENT, pmu_points=PointRoles(None, maps=[]))
    t = time.monotonic()
    flags = feed(an, pmu_windows(Grid(4, seed=11), pmus, 600, jitter=(0.05, 2.0)))
    assert flags == [], [f.detail for f in flags]
    assert an.stats["entries"] == 4 * 600 // WINDOW_S
    assert an.stats["instants"] >= 5 * 590 and an.stats["late_samples"] == 0
    assert time.monotonic() - t < 60


def test_with_one_neighbour_nothing_is_attributed_and_it_is_counted():
    pmus = [Pmu(i, i) for i in range(2)]
    pmus[1].spoof = Spoof(at_s=30.0, step_us=1000.0)
    an = Analyzer(SEGMENT, pmu_points=PointRoles(None, maps=[]))
    flags = feed(an, pmu_windows(Grid(2), pmus, 60))
    assert [f for f in flags if f.kind == FLAG_ANGLE_DRIFT] == []
    assert an.stats["insufficient_neighbours"] >= 2 * 5 * 40


def test_the_registered_point_map_names_the_angle():
    pm = PointRoles(None)  # the shipped maps
    roles = set(pm.by_digest.values()) - {None}
    assert [(r.angle, r.frequency) for r in roles] == [(4, 1)]  # pmu_c37118: VA.ang, FREQ
    meter = {spec.S_PERIOD: 1_000_000, spec.S_POINTS: [[4, 2, [0]]]}
    assert pm(b"x", meter) is None  # a series that does not look like a PMU's is not one


# -- timestamp steps -------------------------------------------------------------------------


def _series_tx(dev: Pmu, times: list[int], period: int, gaps=(), t=None):
    s = readings.Series(list(times), period, [readings.Point(1, 1, [50_000] * len(times))],
                        gaps=list(gaps))
    data, tx_id = dev.signer.make(dev.seq, dev.prev, (t or times[-1] + period, spec.TQ_NTP, 2000),
                                  spec.KIND_READINGS, readings.encode_body([s]))
    dev.seq, dev.prev = dev.seq + 1, tx_id
    return wire.decode(data)


def test_timestamp_steps_within_and_between_transactions_are_flagged():
    dev = Pmu(5, 0)
    an = Analyzer(SEGMENT)
    times = [T0 + i * PERIOD for i in range(250)]
    assert an.observe(_series_tx(dev, times, PERIOD), 0, T0 + 5_100_000, T0 + 5_100_000) == []
    stepped = [T0 + 5_000_000 + i * PERIOD + (1000 if i >= 100 else 0) for i in range(250)]
    f = an.observe(_series_tx(dev, stepped, PERIOD), 1, T0 + 10_100_000, T0 + 10_100_000)
    assert [x.kind for x in f] == [FLAG_TIME_STEP] and f[0].index == 1 and f[0].seq == 1
    assert "+1000 us at sample 100" in f[0].detail and "threshold 500 us" in f[0].detail
    # back by 2 ms between this transaction and the last (another minute: not held back)
    back = [T0 + 10_001_000 - 2000 + i * PERIOD for i in range(250)]
    f = an.observe(_series_tx(dev, back, PERIOD), 2, T0 + 75_000_000, T0 + 75_000_000)
    assert [x.kind for x in f] == [FLAG_TIME_STEP] and "-2000 us at sample 0" in f[0].detail


def test_jittery_polls_missed_frames_and_gaps_are_not_steps():
    rnd = random.Random(5)
    meter, pmu = Pmu(6, 0), Pmu(7, 0)
    an = Analyzer(SEGMENT)
    flags, t = [], T0
    for w in range(60):  # a poll each second, its time taken by a light node with 30 ms jitter
        times = [T0 + (w * 5 + i) * 1_000_000 + int(rnd.uniform(-30_000, 30_000)) for i in range(5)]
        flags += an.observe(_series_tx(meter, times, 1_000_000), w, times[-1] + 200_000,
                            times[-1] + 200_000)
    # a PMU that lost 3 frames inside a window (said as a gap) and 2 between windows (not said)
    times = [T0 + i * PERIOD for i in range(250)]
    times = times[:100] + [x + 3 * PERIOD for x in times[100:]]
    flags += an.observe(_series_tx(pmu, times, PERIOD, gaps=[(100, 3)]), 100, t, t)
    nxt = [times[-1] + 3 * PERIOD + i * PERIOD for i in range(250)]
    flags += an.observe(_series_tx(pmu, nxt, PERIOD), 101, t, t)
    assert flags == [], [f.detail for f in flags]


# -- the clock bracket -----------------------------------------------------------------------


def _heartbeats(dev: Pmu, n: int, every_s: float, start_us: int, clock_error_us: int = 0,
                delay_s=lambda k: 0.2):
    out = []
    for k in range(n):
        t = start_us + int(k * every_s * 1e6)
        data, tx_id = dev.signer.make(dev.seq, dev.prev, (t + clock_error_us, spec.TQ_NTP, 1000),
                                      spec.KIND_HEARTBEAT, {0: "1.0", 1: 1, 2: 0, 3: 2, 4: 1, 5: 0})
        dev.seq, dev.prev = dev.seq + 1, tx_id
        out.append((t + int(delay_s(k) * 1e6), data))
    return sorted(out, key=lambda x: x[0])


def test_a_clock_ahead_of_its_checkpoint_is_flagged_and_an_on_time_one_is_not():
    ahead, fine = Pmu(8, 0), Pmu(9, 0)
    an = Analyzer(SEGMENT)
    stream = sorted(_heartbeats(ahead, 20, 5, T0, clock_error_us=30_000_000)
                    + _heartbeats(fine, 20, 5, T0), key=lambda x: x[0])
    flags = feed(an, stream)
    assert flags and {f.kind for f in flags} == {FLAG_CLOCK_BRACKET}
    assert {f.device for f in flags} == {ahead.device_id}
    assert "after the checkpoint that commits it" in flags[0].detail


def test_a_clock_behind_is_flagged_and_a_backlog_after_an_outage_is_not():
    behind, outage = Pmu(10, 0), Pmu(11, 0)
    an = Analyzer(SEGMENT)
    # a live device whose clock is 60 s behind; a device cut off for 3 minutes whose journal
    # then empties (its transactions arrive within a second of each other)
    live = _heartbeats(behind, 60, 5, T0, clock_error_us=-60_000_000)

    def delay(k):
        t = k * 5
        return (240 - t) + 0.05 * k if 60 <= t < 240 else 0.2

    cut_off = _heartbeats(outage, 60, 5, T0, delay_s=delay)
    flags = feed(an, sorted(live + cut_off, key=lambda x: x[0]))
    assert flags and {f.kind for f in flags} == {FLAG_CLOCK_BRACKET}
    assert {f.device for f in flags} == {behind.device_id}, [f.detail for f in flags]
    assert "before the last cosigned checkpoint" in flags[0].detail
    assert an.stats["backlog_excused"] >= 30


def test_a_backlog_of_windows_each_with_its_heartbeat_is_not_flagged():
    # a window and its heartbeat share one device instant; after a 2-minute outage the first of
    # the backlog and its heartbeat arrive together, then the rest of the backlog
    outage = Pmu(12, 0)
    an = Analyzer(SEGMENT)
    out = []
    for k in range(60):
        t = T0 + k * 5_000_000
        arrival = t + (int((180 - k * 5) * 1e6) + k * 1000 if 60 <= k * 5 < 180 else 200_000)
        for kind, body in ((spec.KIND_HEARTBEAT, {0: "1.0", 1: 1, 2: 0, 3: 2, 4: 1, 5: 0}),) * 2:
            data, tx_id = outage.signer.make(outage.seq, outage.prev, (t, spec.TQ_NTP, 1000), kind, body)
            outage.seq, outage.prev = outage.seq + 1, tx_id
            out.append((arrival, data))
            arrival += 1000
    flags = feed(an, sorted(out, key=lambda x: x[0]))
    assert not [f for f in flags if f.kind == FLAG_CLOCK_BRACKET], [f.detail for f in flags]
    assert an.stats["backlog_excused"] >= 20


# -- operator hours --------------------------------------------------------------------------


def _action(reg_seed: bytes, name: str, local: str, tz: str, seq: int = 0) -> wire.Transaction:
    import datetime as dt
    from zoneinfo import ZoneInfo

    when = dt.datetime.fromisoformat("2015-12-23T" + local).replace(tzinfo=ZoneInfo(tz))
    t = int(when.timestamp() * 1e6)
    data = registry.operator_action(reg_seed, name, SEGMENT, seq, bytes(32), t, "control",
                                    b"\x01" * 8, {"breaker": "open"})
    return wire.decode(data)


def test_an_operator_action_at_an_odd_hour_is_flagged():
    tz = "Europe/Kyiv"
    cfg = AnalysisConfig(timezone=tz, operator_windows={"night": parse_hours("22:00-06:00")})
    an = Analyzer(SEGMENT, cfg)
    seed = b"\x33" * 32
    night = _action(seed, "alice", "03:35:00", tz)
    f = an.operator_action("alice", night, 0, night.time.us, night.time.us)
    assert [x.kind for x in f] == [FLAG_OPERATOR_ODD_HOUR] and f[0].chain == "operator"
    assert "03:35 Europe/Kyiv, outside 06:00-22:00" in f[0].detail and "'control'" in f[0].detail
    day = _action(seed, "bob", "10:15:00", tz)
    assert an.operator_action("bob", day, 1, day.time.us, day.time.us) == []
    # the night shift's own hours
    assert an.operator_action("night", night, 2, night.time.us, night.time.us) == []
    late = _action(seed, "night", "12:00:00", tz)
    assert [x.kind for x in an.operator_action("night", late, 3, late.time.us, late.time.us)] == [
        FLAG_OPERATOR_ODD_HOUR
    ]
    with pytest.raises(ValueError):
        parse_hours("6-22")


# -- odd input -------------------------------------------------------------------------------


def test_bodies_it_cannot_read_are_counted_not_raised():
    dev = Pmu(12, 0)
    an = Analyzer(SEGMENT, pmu_points=PointRoles(None, maps=[]))
    bodies = [
        [{0: "x"}],
        [{0: T0, 1: PERIOD, 2: [0, 0], 3: [[4, 2, [1, 2]]], 4: [[3, 0]]}],  # 2 values for 3 samples
        [{0: T0, 1: PERIOD, 2: "dt", 3: [], 4: []}],
        [{0: T0, 1: PERIOD, 2: [0], 3: [[4, 2, [1, 2]]], 4: [[9, 1]]}],
        [{0: T0, 1: -5, 2: [0], 3: [[4, 7]], 4: 0}],
    ]
    for k, body in enumerate(bodies):
        data, tx_id = dev.signer.make(dev.seq, dev.prev, (T0, 1, 0), spec.KIND_READINGS, body)
        dev.seq, dev.prev = dev.seq + 1, tx_id
        assert an.observe(wire.decode(data), k, T0, T0) == []
    assert an.stats["bad_bodies"] == len(bodies)


# -- through a running node ------------------------------------------------------------------


def test_a_running_node_commits_the_flag_of_a_stepped_pmu(tmp_path):
    """Three registered PMUs (the shipped PMU map's digest) publish 60 s of windows to Mosquitto;
    one steps by 1 ms at 30 s. The node commits them and an angle-drift flag on that PMU,
    and nothing else; ``lightnode ledger flags`` lists it."""
    from click.testing import CliRunner
    from lightnode.drivers import pointmap
    from lightnode.ledgercli import flags_cmd

    digest = pointmap.load((MAPS / "pmu_c37118.json").read_bytes()).digest()
    pmus = [Pmu(20 + i, i) for i in range(3)]
    pmus[0].spoof = Spoof(at_s=30.0, step_us=1000.0)
    reg = make_registry(tmp_path / "reg.db", [])
    admin = reg.as_operator("admin", b"\xad" * 32)
    for p in pmus:
        reg.add_device(p.device_id, p.public_key, SEGMENT, "unix", "0.1.0", digest, admin)
    reg.close()
    # windows of the last minute (a journal emptying): their device times are in the past
    global T0
    saved, T0 = T0, (time.time_ns() // 1000 // 1_000_000 - 65) * 1_000_000
    try:
        stream = pmu_windows(Grid(3, seed=2), pmus, 60)
    finally:
        T0 = saved
    url = "sqlite:///" + str(tmp_path / "ledger.db")
    with mosquitto(tmp_path) as port:
        node = NodeProcess(tmp_path, port, url, tmp_path / "reg.db")
        node.start()
        node.wait_ready()
        from lightnode.node.mqtt import Transport

        pub = Transport.from_url("mqtt://127.0.0.1:%d" % port, "pub-analysis", clean_session=True)
        pub.start()
        try:
            assert _until(lambda: pub.connected, 10)
            for _arrival, data in stream:
                tx = wire.decode(data)
                pub.publish(spec.TOPIC_TX % (SEGMENT, tx.device_id.hex()), data, qos=1)
            assert _until(lambda: node.stats().get("stored", 0) >= len(stream), 30), node.stats()
            assert _until(lambda: node.stats().get("analysis", {}).get("flags"), 10), node.stats()
        finally:
            pub.close()
            assert node.stop() == 0
    with open_store(url) as store:
        flags = [f for f in store.flags() if f.kind in ANALYSIS_FLAGS]
        assert [(f.kind, f.device) for f in flags] == [(FLAG_ANGLE_DRIFT, pmus[0].device_id)], [
            (f.kind, f.detail) for f in flags
        ]
        e = store.entry("seg:" + SEGMENT, flags[0].index)
        assert e is not None and e.device == pmus[0].device_id and e.seq == flags[0].seq
    res = CliRunner().invoke(flags_cmd, ["--store", url, "--kind", "angle-drift", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["kind"], r["device"]) for r in rows] == [("angle-drift", pmus[0].device_id.hex())]


def _until(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_node_commits_an_operator_action_and_flags_an_odd_hour(tmp_path):
    """An operator action on the segment's tx topic goes through Ingest to the operator chain;
    one signed at 03:35 in the segment's time zone is flagged, one at 10:15 is not, a repeat
    is one action, and an unregistered operator's is refused as a stranger's."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from _node_support import ACK_SEED, CP_SEED, node_kids
    from lightnode.ledger.chain import Ledger
    from lightnode.node.ingest import Ingest

    tz = "Europe/Kyiv"
    reg = make_registry(tmp_path / "reg.db", [])
    admin = reg.as_operator("admin", b"\xad" * 32)
    op_seed = b"\x44" * 32
    reg.add_operator("dispatcher", "operator", keys.public_key(op_seed), admin)
    kids = node_kids()
    store = open_store(str(tmp_path / "l.db"))
    ledger = Ledger(store, CP_SEED, kids["checkpoint"])
    ingest = Ingest(ledger, reg, SEGMENT, ACK_SEED, kids["ack"],
                    analyzer=Analyzer(SEGMENT, AnalysisConfig(timezone=tz, bracket_tolerance_us=
                                                              10 ** 15)))
    topic = spec.TOPIC_TX % (SEGMENT, registry.operator_id("dispatcher").hex())
    prev = bytes(32)
    verdicts = []
    for seq, local in enumerate(("03:35", "10:15")):
        when = dt.datetime.fromisoformat("2015-12-23T%s:00" % local).replace(tzinfo=ZoneInfo(tz))
        data = registry.operator_action(op_seed, "dispatcher", SEGMENT, seq, prev,
                                        int(when.timestamp() * 1e6), "control", b"\x01" * 8,
                                        {"breaker": "open"})
        prev = wire.decode(data).id
        verdicts.append(ingest.receive(topic, data, seq).status)
    verdicts.append(ingest.receive(topic, data, 9).status)
    stranger = registry.operator_action(b"\x55" * 32, "mallory", SEGMENT, 0, bytes(32),
                                        T0, "control", b"\x01" * 8)
    mallory = spec.TOPIC_TX % (SEGMENT, registry.operator_id("mallory").hex())
    verdicts.append(ingest.receive(mallory, stranger, 10).status)
    ingest.flush()
    assert verdicts == ["added", "added", "duplicate", "unknown-device"]
    assert len(list(store.entries(chain="operator"))) == 2
    odd = store.flags(kind=FLAG_OPERATOR_ODD_HOUR)
    assert [(f.chain, f.index, f.seq) for f in odd] == [("operator", 0, 0)]
    assert "03:35 Europe/Kyiv" in odd[0].detail
    assert sorted(ingest.settled()) == [0, 1, 9, 10]
    store.close()
