"""Scenario files: every shipped one loads and its references resolve; shortened() keeps every
event and attack inside the shorter run; a broken file gives a ScenarioError naming file and key."""

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightnode.errors import LightnodeError
from lightnode.simulator import devices, scenario
from lightnode.simulator.scenario import ScenarioError

REQUIRED = ("normal_day", "frequency_excursion", "feeder_fault", "storm", "spoofed_device", "replay",
            "tamper_in_transit", "revoked_device", "cloned_device", "gps_spoof", "unregistered_flood",
            "ukraine_2015", "substation")


def test_every_named_scenario_is_shipped():
    assert set(REQUIRED) <= set(scenario.names())


@pytest.mark.parametrize("name", scenario.names())
def test_shipped_file_loads_and_references_resolve(name):
    sc = scenario.load(name)
    assert sc.name == name and sc.title and sc.description and sc.duration_s > 0
    devs = {d.name: d for d in sc.devices}
    for n in sc.light_nodes:
        assert n.device in devs and devs[n.device].kind != "operator"
    for a in sc.attacks:
        assert 0 <= a.at_s < sc.duration_s
        if a.kind in ("gps_drift", "gps_step"):
            assert sc.target_device(a).kind == "pmu"
    for e in sc.events:
        assert 0 <= e.at_s < sc.duration_s
    names = {a.name for a in sc.attacks}
    for x in sc.expect:
        if "attack" in x.params:
            assert x.params["attack"] in names
    assert sc.expect, "every scenario says what must be detected"
    # the objects a run makes from it are made without complaint
    grid = sc.make_grid()
    made = devices.make_devices(sc, grid)
    assert set(made) == set(devs)
    grid.state(min(sc.duration_s, 30.0))


def test_attack_scenarios_expect_their_attack_detected():
    for name in scenario.names():
        sc = scenario.load(name)
        detected = {x.params["attack"] for x in sc.expect if x.kind == "attack_detected"}
        for a in sc.attacks:
            if a.kind != "wipe_node":  # a wiped node is answered by no_loss: the others hold the data
                assert a.name in detected, (name, a.name)
        assert any(x.kind == "no_loss" for x in sc.expect), name


def test_substation_is_the_main_jobs_default_size():
    sc = scenario.load("substation")
    kinds = [sc.device(n.device).kind for n in sc.light_nodes]
    assert 45 <= sc.duration_s <= 90
    assert 2 <= kinds.count("pmu") <= 3 and {"relay", "meter", "charger"} <= set(kinds)
    assert 1 <= len(sc.attacks) <= 2


def test_gps_spoof_states_drift_and_step():
    sc = scenario.load("gps_spoof")
    kinds = {a.kind: a for a in sc.attacks}
    assert kinds["gps_drift"].params["us_per_s"] == 50.0 and kinds["gps_step"].params["ms"] == 1.0
    assert kinds["gps_drift"].target != kinds["gps_step"].target


@pytest.mark.parametrize("name", scenario.names())
@pytest.mark.parametrize("duration", [10.0, 20.0, 45.0])
def test_shortened_keeps_everything_inside(name, duration):
    sc = scenario.load(name)
    sh = sc.shortened(duration)
    d = min(duration, sc.duration_s)
    assert sh.duration_s == d
    assert len(sh.events) == len(sc.events) and len(sh.attacks) == len(sc.attacks)
    assert [e.kind for e in sh.events] == [e.kind for e in sc.events]
    for e in sh.events:
        end = e.at_s + (float(e.params["duration_s"]) if e.kind == "comm_loss" else 0.0)
        assert 0 <= e.at_s and end < d
    for a in sh.attacks:
        assert 0 <= a.at_s < d
        if a.kind == "stolen_credential":
            assert a.at_s + a.params["every_s"] * (len(a.params["breakers"]) - 1) < d
    # order is kept
    assert [a.name for a in sorted(sh.attacks, key=lambda a: a.at_s)] == \
        [a.name for a in sorted(sc.attacks, key=lambda a: a.at_s)] or len(sc.attacks) < 2
    sh.make_grid().state(d - 0.02)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(scenario.names()), duration=st.floats(3.0, 700.0))
def test_property_shortened_fits_any_duration(name, duration):
    sc = scenario.load(name)
    sh = sc.shortened(duration)
    for e in sh.events:
        assert 0 <= e.at_s < sh.duration_s
    for a in sh.attacks:
        assert 0 <= a.at_s < sh.duration_s


def test_shortened_refuses_nonsense():
    with pytest.raises(ValueError):
        scenario.load("substation").shortened(0)


def _data(name="substation"):
    return tomllib.loads(scenario.path_of(name).read_text())


def _write(tmp_path, data, stem="broken"):
    data = dict(data)
    data["name"] = stem
    p = tmp_path / (stem + ".toml")
    p.write_text(_toml(data))
    return p


BROKEN = [
    (lambda d: d.update(colour="red"), "colour", "unknown key"),
    (lambda d: d["device"][0].update(kind="toaster"), "device[0].kind", "toaster"),
    (lambda d: d["device"][0].update(bus="moon"), "device[0].bus", "moon"),
    (lambda d: d["device"][0]["params"].update(speed=3), "device[0].params.speed", "unknown key"),
    (lambda d: d["device"][1]["params"].update(idcode=11), "device[1].params.idcode", "already"),
    (lambda d: d["light_node"][0].update(device="nobody"), "light_node[0].device", "nobody"),
    (lambda d: d["light_node"][0].update(board="abacus"), "light_node[0].board", "abacus"),
    (lambda d: d["attack"][0].update(kind="meteor"), "attack[0].kind", "meteor"),
    (lambda d: d["attack"][0].update(target="ln-meter"), "attack[0].target", "PMU"),
    (lambda d: d["attack"][1].update(target="pmu-east"), "attack[1].target", "light node"),
    (lambda d: d["attack"][0].update(at_s=600), "attack[0].at_s", "before the end"),
    (lambda d: d["event"][0].update(load="mars"), "event[0]", "mars"),
    (lambda d: d["event"][0].update(kind="earthquake"), "event[0].kind", "earthquake"),
    (lambda d: d["expect"][1].update(attack="ghost"), "expect[1].attack", "ghost"),
    (lambda d: d["expect"][1].update(flag="spooky"), "expect[1].flag", "spooky"),
    (lambda d: d["grid"]["line"][0].update(to="nowhere"), "grid", "nowhere"),
    (lambda d: d["grid"].update(inertia_s=-1), "grid", "inertia_s"),
    (lambda d: d.pop("seed"), "seed", "missing"),
    (lambda d: d.update(nominal_hz=55), "nominal_hz", "50 or 60"),
]


@pytest.mark.parametrize("break_it,key,words", BROKEN)
def test_broken_file_names_file_and_key(tmp_path, break_it, key, words):
    data = _data()
    break_it(data)
    p = _write(tmp_path, data)
    with pytest.raises(ScenarioError) as e:
        scenario.load(p)
    assert isinstance(e.value, LightnodeError)
    assert e.value.path == str(p) and e.value.key == key, str(e.value)
    assert str(p) in str(e.value) and words in str(e.value)


def test_unreadable_or_mismatched_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ScenarioError, match="not TOML"):
        scenario.load(bad)
    p = tmp_path / "other.toml"
    data = _data()
    p.write_text(_toml(data))  # name "substation" in other.toml
    with pytest.raises(ScenarioError, match="file's name"):
        scenario.load(p)
    with pytest.raises(ScenarioError, match="no such scenario"):
        scenario.load("no_such_scenario")
    ok = _write(tmp_path, _data(), "copy")
    assert scenario.load(ok).name == "copy"


def _toml(data):
    """A small TOML writer for the test's altered copies (values of the kinds the files use)."""
    out, tables = [], []

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        if isinstance(v, list):
            return "[%s]" % ", ".join(val(x) for x in v)
        if isinstance(v, dict):
            return "{ %s }" % ", ".join("%s = %s" % (k, val(x)) for k, x in v.items())
        return repr(v)

    def table(prefix, d):
        scalars = {k: v for k, v in d.items()
                   if not (isinstance(v, dict) and prefix == "grid") and
                   not (isinstance(v, list) and v and isinstance(v[0], dict))}
        for k, v in scalars.items():
            out.append("%s = %s" % (k, val(v)))
        for k, v in d.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    tables.append(("%s%s" % (prefix + "." if prefix else "", k), item))

    table("", {k: v for k, v in data.items() if k != "grid"})
    if "grid" in data:
        out.append("[grid]")
        table("grid", data["grid"])
    for name, item in tables:
        out.append("[[%s]]" % name)
        for k, v in item.items():
            out.append("%s = %s" % (k, val(v)))
    return "\n".join(out) + "\n"


def test_a_shipped_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    # `lightnode simulate storm --out storm`, then `lightnode simulate storm` again in that place
    monkeypatch.chdir(tmp_path)
    (tmp_path / "storm").mkdir()
    assert scenario.load("storm").name == "storm"
