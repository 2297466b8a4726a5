"""The simulator's grid model: deterministic per seed, frequency within bounds with a realistic
ROCOF, angles that agree with the flows, load steps and generator losses answered by governors,
under-frequency load shedding at its threshold, feeder protection (trip, reclose, lockout)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightnode.simulator.grid import STEP_S, Event, Grid, GridError, GridSpec


def run(grid, until_s, every_s=STEP_S):
    n = int(round(until_s / every_s))
    return [grid.state(k * every_s) for k in range(n + 1)]


def test_same_seed_same_grid_other_seed_other_grid():
    events = [Event(5.0, "load_step", {"load": "city", "mw": 50})]
    a = run(Grid(GridSpec.small(), events, seed=4), 20)
    b = run(Grid(GridSpec.small(), events, seed=4), 20)
    c = run(Grid(GridSpec.small(), events, seed=5), 20)
    assert [s.freq_hz for s in a] == [s.freq_hz for s in b]
    assert [s.buses["east"].angle_deg for s in a] == [s.buses["east"].angle_deg for s in b]
    assert [s.freq_hz for s in a] != [s.freq_hz for s in c]


def test_normal_operation_frequency_and_rocof_realistic():
    states = run(Grid(GridSpec.small(), [], seed=3), 600, every_s=0.1)
    f = [s.freq_hz for s in states]
    mean = sum(f) / len(f)
    sd = math.sqrt(sum((x - mean) ** 2 for x in f) / len(f))
    assert 49.9 < min(f) and max(f) < 50.1  # within the normal band of an interconnection
    assert 0.003 < sd < 0.05  # it wanders (a few to tens of mHz), it is not a constant
    assert max(abs(s.rocof_hz_s) for s in states) < 0.1  # mHz/s to tens of mHz/s, never ~1 Hz/s


def test_line_flow_sign_follows_the_angle_difference():
    g = Grid(GridSpec.small(), [], seed=2)
    spec = g.spec
    for s in run(g, 5, every_s=0.5):
        for ln in spec.lines:
            diff = (s.buses[ln.a].angle_deg - s.buses[ln.b].angle_deg + 180) % 360 - 180
            p = s.lines[ln.name].p_mw
            assert p == pytest.approx(math.radians(diff) / ln.x_pu * spec.base_mva, rel=1e-6, abs=1e-6)
            assert (p > 0) == (diff > 0)
        # power balances at each non-slack bus: what comes in by lines equals the net load
        for bus in ("south", "east"):
            inflow = sum(s.lines[ln.name].p_mw * (1 if ln.b == bus else -1)
                         for ln in spec.lines if bus in (ln.a, ln.b))
            gen = sum(x.mw for x in spec.gens if x.bus == bus)
            load = sum(s.loads[x.name].mw for x in spec.loads if x.bus == bus)
            assert inflow == pytest.approx(load - gen, rel=0.01)


def test_load_step_lowers_frequency_then_governors_and_agc_bring_it_back():
    spec = GridSpec.from_dict({**_small_dict(), "noise_mw": 0})
    g = Grid(spec, [Event(10.0, "load_step", {"load": "city", "mw": 100})], seed=1)
    states = {round(s.t_s, 2): s for s in run(g, 200, every_s=0.1)}
    before = states[9.9].freq_hz
    nadir = min(s.freq_hz for t, s in states.items() if 10 <= t <= 30)
    rocof0 = states[10.1].rocof_hz_s
    # ROCOF right after the step: f0 * dP / (2 H S) = 50 * 100 / (2 * 5 * 5000) = 0.1 Hz/s
    assert rocof0 == pytest.approx(-0.1, rel=0.15)
    assert before - nadir > 0.05
    assert abs(states[200.0].freq_hz - 50.0) < 0.2 * (before - nadir)  # AGC restores it
    # the step shows in the flows: more power flows towards the city's bus
    assert states[30.0].lines["north-south"].p_mw > states[9.9].lines["north-south"].p_mw + 40


def test_ufls_sheds_at_its_threshold_and_stops_the_fall():
    spec = GridSpec.from_dict({**_small_dict(), "noise_mw": 0})
    g = Grid(spec, [Event(5.0, "frequency_excursion", {"mw": 1000})], seed=1)
    states = run(g, 60)
    shed = [e for s in states for e in s.events if e.kind == "ufls"]
    assert shed, "a 1000 MW loss in a 5 GW system must reach the first stage"
    first = shed[0]
    at = next(s for s in states if s.t_s == pytest.approx(first.t_s))
    assert at.freq_hz < 49.0  # below the stage's threshold ...
    before = [s for s in states if s.t_s < first.t_s - 0.1 - 1e-9]
    assert min(s.freq_hz for s in before) > 48.95  # ... and it did not wait long below it
    # no stage without an excursion
    quiet = run(Grid(spec, [], seed=1), 30, every_s=0.1)
    assert not [e for s in quiet for e in s.events if e.kind == "ufls"]
    # with shedding the load served drops by the stage's share
    assert states[-1].loads["city"].mw < 180 * 0.97


def test_feeder_fault_trips_after_its_delay_recloses_and_locks_out():
    events = [Event(10.0, "fault", {"feeder": "f-town", "current_a": 5000, "dip_pu": 0.3})]
    g = Grid(GridSpec.small(), events, seed=1)
    states = run(g, 20)
    log = [(e.kind, e.source, round(e.t_s, 2)) for e in g.log]
    trips = [t for k, s, t in log if k == "trip" and s == "f-town"]
    assert trips[0] == pytest.approx(10.0 + 0.3, abs=0.03)  # the feeder's definite-time delay
    assert ("reclose", "f-town") in [(k, s) for k, s, _ in log]
    assert ("lockout", "f-town") in [(k, s) for k, s, _ in log]
    during = next(s for s in states if s.t_s == pytest.approx(10.2))
    assert during.feeders["f-town"].i_a == 5000
    assert during.buses["east"].v_pu == pytest.approx(0.3, abs=0.02)  # the dip at the fault's bus
    assert 0.3 < during.buses["south"].v_pu < 0.9  # less one line away
    end = states[-1]
    assert not end.feeders["f-town"].closed and end.feeders["f-town"].lockout
    assert end.loads["town"].mw == 0 and end.buses["east"].v_pu > 0.95


def test_transient_fault_clears_on_reclose_and_operator_closes_a_lockout():
    events = [Event(5.0, "fault", {"feeder": "f-town", "duration_s": 0.5}),
              Event(20.0, "fault", {"feeder": "f-city"}),
              Event(40.0, "breaker_close", {"breaker": "f-city"}),
              Event(30.0, "fault", {"line": "south-east", "duration_s": 0.2})]
    spec = GridSpec.small()
    g = Grid(spec, events, seed=1)
    s = g.state(10.0)
    assert s.feeders["f-town"].closed and not s.feeders["f-town"].lockout  # reclosed onto a clear line
    assert g.state(30.5).lines["south-east"].closed is False  # line protection opened the line
    assert g.state(30.5).lines["south-east"].p_mw == 0
    s = g.state(39.0)
    assert s.feeders["f-city"].lockout and s.loads["city"].mw == 0
    s = g.state(41.0)  # the permanent fault is still there: closing onto it trips again
    assert [e.kind for e in g.log if e.source == "f-city" and e.t_s >= 40][:2] == ["close", "trip"]


def test_open_line_reroutes_power_and_an_island_is_dark():
    events = [Event(2.0, "breaker_open", {"breaker": "north-east"})]
    g = Grid(GridSpec.small(), events, seed=1)
    a, b = g.state(1.0), g.state(3.0)
    assert a.lines["north-east"].closed and not b.lines["north-east"].closed
    assert b.lines["north-east"].p_mw == 0
    total = sum(s.lines["north-south"].p_mw for s in (a, b))
    assert total != 0 and abs(b.lines["north-south"].p_mw - a.lines["north-south"].p_mw) > 1
    g2 = Grid(GridSpec.small(), [Event(1.0, "breaker_open", {"breaker": "north-east"}),
                                 Event(1.0, "breaker_open", {"breaker": "south-east"})], seed=1)
    s = g2.state(2.0)
    assert not s.buses["east"].energized and s.buses["east"].v_pu == 0 and s.loads["town"].mw == 0


def test_history_allows_readers_slightly_behind_but_not_before_it():
    g = Grid(GridSpec.small(), [], seed=1, history_s=2.0)
    s5 = g.state(5.0)
    assert g.state(4.0).t_s == pytest.approx(4.0) and g.state(5.0) is s5
    with pytest.raises(ValueError):
        g.state(1.0)
    with pytest.raises(ValueError):
        g.state(-1)


def test_bad_specs_and_events_name_the_key():
    bad = _small_dict()
    bad["line"] = [*bad["line"], {"name": "x", "from": "north", "to": "nowhere", "x_pu": 0.1}]
    with pytest.raises(GridError, match=r"line\[3\]\.to"):
        GridSpec.from_dict(bad)
    with pytest.raises(GridError, match="colour"):
        GridSpec.from_dict({**_small_dict(), "colour": "red"})
    with pytest.raises(GridError, match="slack"):
        GridSpec.from_dict({**_small_dict(), "bus": [{"name": "north"}, {"name": "south"}]})
    with pytest.raises(GridError, match="no load"):
        Grid(GridSpec.small(), [Event(1, "load_step", {"load": "moon", "mw": 1})])
    with pytest.raises(GridError, match="feeder or line"):
        Grid(GridSpec.small(), [Event(1, "breaker_open", {"breaker": "city"})])


@settings(max_examples=15, deadline=None)
@given(mw=st.floats(-150, 150), at=st.floats(0.5, 5), seed=st.integers(0, 2**31))
def test_property_any_load_step_keeps_frequency_bounded_and_flows_consistent(mw, at, seed):
    g = Grid(GridSpec.small(), [Event(at, "load_step", {"load": "city", "mw": mw})], seed=seed)
    for s in run(g, 10, every_s=0.2):
        assert 49.5 < s.freq_hz < 50.5
        assert abs(s.rocof_hz_s) < 1.0
        for ln in g.spec.lines:
            diff = (s.buses[ln.a].angle_deg - s.buses[ln.b].angle_deg + 180) % 360 - 180
            assert (s.lines[ln.name].p_mw >= 0) == (diff >= 0) or abs(s.lines[ln.name].p_mw) < 1e-6


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), times=st.lists(st.floats(0, 20), min_size=1, max_size=20))
def test_property_state_depends_only_on_time_not_on_when_asked(seed, times):
    times = sorted(times)
    g1, g2 = Grid(GridSpec.small(), [], seed=seed), Grid(GridSpec.small(), [], seed=seed)
    for t in times:
        g1.state(t)
    for t in times:
        assert g1.state(t).freq_hz == g2.state(t).freq_hz


def _small_dict():
    return GridSpec.small_dict()
