"""Scenarios as files: a grid, the devices on it, the light nodes reading them, what happens, and
what must be detected.

A scenario is a TOML file (``simulator/scenarios/<name>.toml``, shipped as
package data), read and checked strictly here: an unknown key, an unknown
device or attack kind, or a name that refers to nothing is a
``ScenarioError`` naming the file and the key.

    >>> from lightnode.simulator import scenario
    >>> sc = scenario.load("substation")            # a shipped name, or a path to a .toml file
    >>> sc.duration_s, [d.kind for d in sc.devices][:2]
    (60.0, ['pmu', 'pmu'])
    >>> short = sc.shortened(20)                     # the CI profile: every event inside 20 s
    >>> grid = sc.make_grid()                        # lightnode.simulator.grid.Grid, events and attacks in it
    >>> scenario.names()[:2]
    ['cloned_device', 'feeder_fault']

The file's layout (every table optional but ``grid``, ``device`` and ``light_node``)::

    name = "substation"            # must equal the file's stem
    title = "..."
    description = "..."
    duration_s = 60
    seed = 7
    nominal_hz = 50                # 50 or 60; also the grid's nominal frequency
    [grid]                         # lightnode.simulator.grid.GridSpec.from_dict: system keys,
    [[grid.bus]] ...               #   [[grid.bus]] [[grid.line]] [[grid.gen]] [[grid.load]]
                                   #   [[grid.feeder]] [[grid.ufls]]
    [[device]]                     # name, kind, bus, and params (a table): DEVICE_KINDS
    [[light_node]]                 # name, device, board = "pico_w", window_s, firmware = false
    [[event]]                      # at_s, kind, and the kind's keys (grid.EVENT_PARAMS)
    [[attack]]                     # name, kind, at_s, target, and the kind's keys (ATTACK_PARAMS)
    [[expect]]                     # kind and its keys (EXPECT_PARAMS)

Devices by kind (``params`` keys, required ones first):

- ``pmu``: bus; params ``idcode`` (required, unique), ``line`` (the line whose current it
  measures; default the first line at its bus), ``rate`` (frames/s, default 50)
- ``relay``: bus; params ``feeder`` (required: the feeder whose breaker it protects; its
  protection settings are the feeder's, in the grid)
- ``meter``: bus; params ``load`` (required), ``kw`` (the metered customer's nominal kW,
  default 6.6; it follows the load's shape), ``e0_wh`` (the import register at t=0), ``unit``
- ``charger``: bus; params ``load`` (optional: the supply it hangs on, for its breaker),
  ``max_kw`` (default 22), ``sessions`` (a list of [start_s, end_s, kw]; default drawn from the
  seed), ``unit``
- ``scada``: params ``meter`` (required: the meter it polls on its RS-485 bus, for tap mode),
  ``period_s``
- ``operator``: params ``operator`` (the operator's name in the registry, required),
  ``role`` (default "operator"); actions come from ``operator_action`` events

Attack kinds (``target`` and the kind's keys):

- ``spoofed_device``, ``replay``, ``tamper``, ``revoked_device``, ``cloned_device``: target a
  light node; ``replay`` takes ``count`` (transactions replayed, default 5), ``tamper`` takes
  ``count`` (default 5)
- ``gps_drift`` (``us_per_s``), ``gps_step`` (``ms``): target a PMU device or a light node
  reading one; put into that PMU's clock (timestamps and phasor angles)
- ``flood``: no target; ``devices`` (how many unregistered devices), ``rate`` (tx/s each)
- ``stolen_credential``: target an operator console; ``hour`` (the odd hour of day, UTC, the
  stolen key is used at), ``breakers`` (feeders or lines it opens, one every ``every_s``=5 s)
- ``wipe_node``: target ``producer``, ``witness1`` or ``witness2``

Expectation kinds: ``no_loss``; ``attack_detected`` (``attack``, one of ``reason``/``flag``,
``within_s``); ``no_time_flags``; ``flag`` (``flag``: the flag's kind, ``device``: a light
node, ``within_s``);
``event_committed`` (``device``: a light node, ``type``: an event type of the wire format).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightnode import boards
from lightnode.errors import LightnodeError
from lightnode.simulator import grid as gridmod
from lightnode.simulator.grid import Event, Grid, GridError, GridSpec

HERE = Path(__file__).resolve().parent / "scenarios"

DEVICE_KINDS = ("pmu", "relay", "meter", "charger", "scada", "operator")
# Per device kind: (needs a bus, required params, optional params)
DEVICE_PARAMS: dict[str, tuple[bool, set[str], set[str]]] = {
    "pmu": (True, {"idcode"}, {"line", "rate"}),
    "relay": (True, {"feeder"}, set()),
    "meter": (True, {"load"}, {"kw", "e0_wh", "unit"}),
    "charger": (True, set(), {"load", "max_kw", "sessions", "unit"}),
    "scada": (False, {"meter"}, {"period_s"}),
    "operator": (False, {"operator"}, {"role"}),
}
ATTACK_KINDS = ("spoofed_device", "replay", "tamper", "revoked_device", "cloned_device",
                "gps_drift", "gps_step", "flood", "stolen_credential", "wipe_node")
# Per attack kind: (what target names: "light_node", "pmu", "operator", "node" or None,
#                   required params, optional params)
ATTACK_PARAMS: dict[str, tuple[str | None, set[str], set[str]]] = {
    "spoofed_device": ("light_node", set(), {"count"}),
    "replay": ("light_node", set(), {"count"}),
    "tamper": ("light_node", set(), {"count"}),
    "revoked_device": ("light_node", set(), set()),
    "cloned_device": ("light_node", set(), {"count"}),
    "gps_drift": ("pmu", {"us_per_s"}, set()),
    "gps_step": ("pmu", {"ms"}, set()),
    "flood": (None, {"devices", "rate"}, {"duration_s"}),
    "stolen_credential": ("operator", {"hour", "breakers"}, {"every_s"}),
    "wipe_node": ("node", set(), set()),
}
FULL_NODES = ("producer", "witness1", "witness2")
EXPECT_KINDS = ("no_loss", "attack_detected", "no_time_flags", "flag", "event_committed")
EXPECT_PARAMS: dict[str, tuple[set[str], set[str]]] = {
    "no_loss": (set(), set()),
    "attack_detected": ({"attack"}, {"reason", "flag", "within_s"}),
    "no_time_flags": (set(), set()),
    "flag": ({"flag", "device"}, {"within_s"}),  # the flag's kind is ``flag``: ``kind`` is taken
    "event_committed": ({"device", "type"}, set()),
}
TIME_FLAGS = ("angle-drift", "time-step", "clock-bracket")  # what no_time_flags counts


def event_types() -> dict[str, int]:
    """Event types an ``event_committed`` may name: the wire's EV_* constants, as ``alarm-low``."""
    from lightnode.firmware.ln import wire

    return {n[3:].lower().replace("_", "-"): getattr(wire, n) for n in dir(wire) if n.startswith("EV_")}


def reasons() -> tuple[str, ...]:
    """What an ``attack_detected`` may name as ``reason``: a node's refusals, ``duplicate``
    (a replay that is only counted), and the registry's refusals of operator actions."""
    from lightnode import registry
    from lightnode.firmware.ln import ack

    return tuple(ack.NACK_REASONS) + ("duplicate",) + (
        registry.R_UNKNOWN_OPERATOR, registry.R_REVOKED_OPERATOR, registry.R_KEY_VALIDITY,
        registry.R_ROLE, registry.R_ACTION, registry.R_SIGNATURE)


def flags() -> tuple[str, ...]:
    """What an ``attack_detected`` or ``flag`` may name as a flag: the ledger store's flags."""
    from lightnode.ledger import store

    return tuple(store.FLAG_NAMES.values()) + (
        store.FLAG_FORK, store.FLAG_CHECKPOINT_FORK, store.FLAG_INCONSISTENT,
        store.FLAG_FORGED_BLOCK) + tuple(store.ANALYSIS_FLAGS)
_TOP = {"name", "title", "description", "duration_s", "seed", "nominal_hz", "grid", "device",
        "light_node", "event", "attack", "expect"}


class ScenarioError(LightnodeError):
    """A scenario file that cannot be used: ``path`` and ``key`` say where, the message says why."""

    def __init__(self, path: str, key: str, why: str) -> None:
        self.path = path
        self.key = key
        self.why = why
        super().__init__("%s: %s: %s" % (path, key, why) if key else "%s: %s" % (path, why))


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    kind: str  # DEVICE_KINDS
    bus: str | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LightNodeSpec:
    name: str
    device: str  # the device it reads
    board: str = "pico_w"
    window_s: float = 5.0  # the board's default window unless the file says otherwise
    firmware: bool = False  # run the real firmware in the unix port rather than emulate it


@dataclass(frozen=True)
class Attack:
    name: str
    kind: str  # ATTACK_KINDS
    at_s: float
    target: str | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Expectation:
    kind: str  # EXPECT_KINDS
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short, stable name for reports: the kind and its main parameter."""
        p = self.params
        main = p.get("attack") or p.get("device")
        extra = p.get("reason") or p.get("flag") or p.get("type")
        return ":".join(str(x) for x in (self.kind, main, extra) if x)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    description: str
    duration_s: float
    seed: int
    nominal_hz: float
    grid: GridSpec
    devices: tuple[DeviceSpec, ...]
    light_nodes: tuple[LightNodeSpec, ...]
    events: tuple[Event, ...] = ()
    attacks: tuple[Attack, ...] = ()
    expect: tuple[Expectation, ...] = ()
    path: str = ""

    # -- looking things up --
    def device(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def light_node(self, name: str) -> LightNodeSpec:
        for n in self.light_nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def attack(self, name: str) -> Attack:
        for a in self.attacks:
            if a.name == name:
                return a
        raise KeyError(name)

    def target_device(self, attack: Attack) -> DeviceSpec | None:
        """The device an attack acts on (a light node's device for node targets), or None."""
        if attack.target is None:
            return None
        names = {d.name for d in self.devices}
        if attack.target in names:
            return self.device(attack.target)
        nodes = {n.name: n for n in self.light_nodes}
        if attack.target in nodes:
            return self.device(nodes[attack.target].device)
        return None

    # -- making the run's objects --
    def grid_events(self) -> list[Event]:
        """The file's events, and the grid events attacks cause (breakers a stolen credential opens)."""
        out = list(self.events)
        for a in self.attacks:
            if a.kind == "stolen_credential":
                every = float(a.params.get("every_s", 5.0))
                for i, br in enumerate(a.params["breakers"]):
                    out.append(Event(a.at_s + i * every, "operator_action",
                                     {"console": a.target, "action": "control", "breaker": br,
                                      "open": True, "attack": a.name, "hour": a.params["hour"]}))
        return sorted(out, key=lambda e: e.at_s)

    def make_grid(self) -> Grid:
        """The grid of this scenario, with its events and the attacks' grid effects."""
        return Grid(self.grid, self.grid_events(), self.seed)

    # -- the CI profile --
    def shortened(self, duration_s: float) -> Scenario:
        """The same scenario in ``duration_s`` (not longer than it is): times scaled to fit.

        Event and attack times scale with the duration; each attack is moved
        earlier if needed so the longest ``within_s`` of the expectations
        naming it still ends inside the run; a comm loss keeps at least 1 s
        and ends inside the run. Physical times (a fault's duration, a
        relay's delay) do not scale.
        """
        if not duration_s > 0:
            raise ValueError("duration_s must be positive")
        if duration_s >= self.duration_s:
            return self
        d = float(duration_s)
        k = d / self.duration_s
        tail = max(1.0, 0.05 * d)  # every scheduled time ends this far before the end at least

        def at(t: float, room: float = 0.0) -> float:
            return max(0.0, min(t * k, d - tail - room))

        events = []
        for e in self.events:
            p = dict(e.params)
            room = 0.0
            if e.kind == "comm_loss":
                p["duration_s"] = max(1.0, min(float(p["duration_s"]) * k, d / 3))
                room = p["duration_s"]
            elif "duration_s" in p:
                # Seconds are physics (a fault cleared by a reclose); longer spans are the
                # scenario's schedule (a repair, an outage) and scale with it.
                if float(p["duration_s"]) >= 5.0:
                    p["duration_s"] = max(1.0, float(p["duration_s"]) * k)
                room = min(float(p["duration_s"]), d / 3)
            events.append(Event(at(e.at_s, room), e.kind, p))
        attacks = []
        for a in self.attacks:
            within = [float(x.params.get("within_s", 0.0)) for x in self.expect
                      if x.params.get("attack") == a.name]
            room = min(max(within, default=0.0), d / 2)
            p = dict(a.params)
            if a.kind == "stolen_credential":
                p["every_s"] = min(float(p.get("every_s", 5.0)), max(0.2, d / 20))
                room = max(room, p["every_s"] * len(p["breakers"]))
            if a.kind == "flood" and "duration_s" in p:
                p["duration_s"] = max(1.0, min(float(p["duration_s"]) * k, d / 3))
                room = max(room, p["duration_s"])
            attacks.append(dataclasses.replace(a, at_s=at(a.at_s, room), params=p))
        return dataclasses.replace(self, duration_s=d, events=tuple(events), attacks=tuple(attacks))


# -- loading -------------------------------------------------------------------------------


def names() -> list[str]:
    """The shipped scenarios, by name."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def path_of(name: str) -> Path:
    """The file of a shipped scenario."""
    return HERE / ("%s.toml" % name)


def load(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or a scenario file by path; ScenarioError if it is not usable."""
    p = Path(name_or_path)
    # a shipped name wins over a folder of that name here (a run's output folder often is one)
    if p.suffix != ".toml" and not p.is_file():
        if str(name_or_path) not in names():
            raise ScenarioError(str(name_or_path), "", "no such scenario; shipped: %s" % ", ".join(names()))
        p = path_of(str(name_or_path))
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(str(p), "", "cannot be read (%s)" % e.strerror) from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(p), "", "not TOML: %s" % e) from None
    except UnicodeDecodeError:
        raise ScenarioError(str(p), "", "not UTF-8 text") from None
    return parse(data, str(p), p.stem)


def parse(data: dict[str, Any], path: str = "<scenario>", stem: str | None = None) -> Scenario:
    """A scenario from already-parsed TOML (``path`` names it in errors)."""
    return _Parser(path).scenario(data, stem)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, why: str) -> ScenarioError:
        return ScenarioError(self.path, key, why)

    def keys(self, d: Any, key: str, required: set[str], optional: set[str]) -> None:
        if not isinstance(d, dict):
            raise self.fail(key, "a table is needed")
        for k in d:
            if k not in required and k not in optional:
                known = ", ".join(sorted(required | optional)) or "none"
                raise self.fail("%s.%s" % (key, k) if key else k, "unknown key (known: %s)" % known)
        for k in sorted(required):
            if k not in d:
                raise self.fail("%s.%s" % (key, k) if key else k, "missing")

    def text(self, d: dict[str, Any], k: str, key: str, default: str | None = None) -> str:
        v = d.get(k, default)
        if not isinstance(v, str) or not v:
            raise self.fail("%s.%s" % (key, k) if key else k, "a non-empty string is needed")
        return v

    def number(self, d: dict[str, Any], k: str, key: str, low: float = 0.0, default: float | None = None,
               positive: bool = False) -> float:
        v = d.get(k, default)
        where = "%s.%s" % (key, k) if key else k
        if v is None or not _is_num(v):
            raise self.fail(where, "a number is needed, not %r" % (v,))
        if v < low or (positive and v <= 0):
            raise self.fail(where, "%r is out of range" % (v,))
        return float(v)

    def items(self, data: dict[str, Any], k: str) -> list[tuple[str, dict[str, Any]]]:
        v = data.get(k, [])
        if not isinstance(v, list):
            raise self.fail(k, "an array of tables is needed ([[%s]])" % k)
        out = []
        for i, item in enumerate(v):
            where = "%s[%d]" % (k, i)
            if not isinstance(item, dict):
                raise self.fail(where, "a table is needed")
            out.append((where, item))
        return out

    def scenario(self, data: dict[str, Any], stem: str | None) -> Scenario:
        self.keys(data, "", {"name", "title", "duration_s", "seed", "grid", "device", "light_node"},
                  _TOP)
        name = self.text(data, "name", "")
        if stem is not None and name != stem:
            raise self.fail("name", "%r is not the file's name %r" % (name, stem))
        title = self.text(data, "title", "")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", "a string is needed")
        duration = self.number(data, "duration_s", "", positive=True)
        seed = data["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise self.fail("seed", "an integer >= 0 is needed")
        nominal = self.number(data, "nominal_hz", "", default=50)
        if nominal not in (50.0, 60.0):
            raise self.fail("nominal_hz", "50 or 60, not %r" % nominal)
        g = data["grid"]
        if not isinstance(g, dict):
            raise self.fail("grid", "a table is needed")
        if "nominal_hz" in g:
            raise self.fail("grid.nominal_hz", "set nominal_hz at the top of the file")
        try:
            spec = GridSpec.from_dict({**g, "nominal_hz": nominal})
        except GridError as e:
            raise self.fail("grid", str(e).removeprefix("grid.").removeprefix("grid: ")) from None
        grid_names = spec.names()

        devices = self.devices(data, spec, grid_names)
        by_name = {d.name: d for d in devices}
        nodes = self.light_nodes(data, by_name, grid_names)
        node_names = {n.name for n in nodes}
        events = self.events(data, spec, duration, by_name, node_names)
        attacks = self.attacks(data, duration, by_name, nodes, grid_names)
        expect = self.expectations(data, {a.name for a in attacks}, node_names)
        return Scenario(name, title, description, duration, seed, nominal, spec, tuple(devices),
                        tuple(nodes), tuple(events), tuple(attacks), tuple(expect), self.path)

    def devices(self, data: dict[str, Any], spec: GridSpec, grid_names: dict[str, str]) -> list[DeviceSpec]:
        out: list[DeviceSpec] = []
        seen: set[str] = set()
        idcodes: dict[int, str] = {}
        for where, d in self.items(data, "device"):
            self.keys(d, where, {"name", "kind"}, {"bus", "params"})
            name = self.text(d, "name", where)
            if name in seen or name in grid_names:
                raise self.fail(where + ".name", "%r is already a name in this scenario" % name)
            seen.add(name)
            kind = d["kind"]
            if kind not in DEVICE_KINDS:
                raise self.fail(where + ".kind", "%r is not one of %s" % (kind, ", ".join(DEVICE_KINDS)))
            needs_bus, required, optional = DEVICE_PARAMS[kind]
            bus = d.get("bus")
            if bus is not None and not isinstance(bus, str):
                raise self.fail(where + ".bus", "a bus name is needed")
            if needs_bus:
                if bus is None or grid_names.get(bus) != "bus":
                    raise self.fail(where + ".bus", "no bus %r in the grid" % (bus,))
            elif bus is not None:
                raise self.fail(where + ".bus", "a %s is not on a bus" % kind)
            params = d.get("params", {})
            self.keys(params, where + ".params", required, optional)
            p = where + ".params"
            if kind == "pmu":
                idc = params["idcode"]
                if not isinstance(idc, int) or isinstance(idc, bool) or not 1 <= idc <= 65534:
                    raise self.fail(p + ".idcode", "an integer 1-65534 is needed")
                if idc in idcodes:
                    raise self.fail(p + ".idcode", "%d is already %r's" % (idc, idcodes[idc]))
                idcodes[idc] = name
                if "line" in params:
                    ln = next((x for x in spec.lines if x.name == params["line"]), None)
                    if ln is None or bus not in (ln.a, ln.b):
                        raise self.fail(p + ".line", "no line %r at bus %r" % (params["line"], bus))
                if "rate" in params and params["rate"] not in (10, 25, 50, 60, 100, 120):
                    raise self.fail(p + ".rate", "a C37.118 rate (10, 25, 50, 60, 100, 120) is needed")
            elif kind == "relay":
                f = next((x for x in spec.feeders if x.name == params["feeder"]), None)
                if f is None:
                    raise self.fail(p + ".feeder", "no feeder %r in the grid" % (params["feeder"],))
                if f.bus != bus:
                    raise self.fail(p + ".feeder", "feeder %r is on bus %r, not %r" % (f.name, f.bus, bus))
            elif kind in ("meter", "charger"):
                if "load" in params:
                    ld = next((x for x in spec.loads if x.name == params["load"]), None)
                    if ld is None:
                        raise self.fail(p + ".load", "no load %r in the grid" % (params["load"],))
                    if ld.bus != bus:
                        raise self.fail(p + ".load", "load %r is on bus %r, not %r" % (ld.name, ld.bus, bus))
                for k in ("kw", "max_kw", "e0_wh"):
                    if k in params:
                        self.number(params, k, p, positive=k != "e0_wh")
                if "unit" in params and (not isinstance(params["unit"], int) or not 1 <= params["unit"] <= 247):
                    raise self.fail(p + ".unit", "a Modbus unit 1-247 is needed")
                if "sessions" in params:
                    s = params["sessions"]
                    if not isinstance(s, list) or not all(
                            isinstance(x, list) and len(x) == 3 and all(_is_num(v) for v in x)
                            and 0 <= x[0] < x[1] and x[2] > 0 for x in s):
                        raise self.fail(p + ".sessions", "a list of [start_s, end_s, kw] is needed")
            elif kind == "scada":
                m = params["meter"]
                if m not in seen or not any(x.name == m and x.kind == "meter" for x in out):
                    raise self.fail(p + ".meter", "no meter %r declared before it" % (m,))
            elif kind == "operator":
                op = params["operator"]
                if not isinstance(op, str) or not op or len(op) > 64 or not all(
                        c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in op):
                    raise self.fail(p + ".operator", "an operator name (1-64 of a-z0-9._-) is needed")
                if params.get("role", "operator") not in ("admin", "operator", "auditor"):
                    raise self.fail(p + ".role", "admin, operator or auditor")
            out.append(DeviceSpec(name, kind, bus, dict(params)))
        if not out:
            raise self.fail("device", "at least one [[device]] is needed")
        return out

    def light_nodes(self, data: dict[str, Any], devices: dict[str, DeviceSpec],
                    grid_names: dict[str, str]) -> list[LightNodeSpec]:
        out: list[LightNodeSpec] = []
        seen: set[str] = set()
        board_names = boards.names()
        for where, d in self.items(data, "light_node"):
            self.keys(d, where, {"name", "device"}, {"board", "window_s", "firmware"})
            name = self.text(d, "name", where)
            if name in seen or name in devices or name in grid_names:
                raise self.fail(where + ".name", "%r is already a name in this scenario" % name)
            seen.add(name)
            dev = d["device"]
            if dev not in devices:
                raise self.fail(where + ".device", "no device %r" % (dev,))
            if devices[dev].kind in ("operator",):
                raise self.fail(where + ".device", "a light node does not read an operator console")
            board = d.get("board", "pico_w")
            if board not in board_names:
                raise self.fail(where + ".board", "%r is not one of %s" % (board, ", ".join(board_names)))
            window = d.get("window_s")
            if window is None:
                window = float(boards.load(board)["default_window_s"])
            else:
                window = self.number(d, "window_s", where, positive=True)
                if window > 3600:
                    raise self.fail(where + ".window_s", "at most 3600 s")
            fw = d.get("firmware", False)
            if not isinstance(fw, bool):
                raise self.fail(where + ".firmware", "true or false")
            out.append(LightNodeSpec(name, dev, board, float(window), fw))
        if not out:
            raise self.fail("light_node", "at least one [[light_node]] is needed")
        return out

    def events(self, data: dict[str, Any], spec: GridSpec, duration: float,
               devices: dict[str, DeviceSpec], nodes: set[str]) -> list[Event]:
        out = []
        for where, d in self.items(data, "event"):
            kind = d.get("kind")
            if kind not in gridmod.EVENT_PARAMS:
                raise self.fail(where + ".kind", "%r is not one of %s" % (kind, ", ".join(gridmod.EVENT_KINDS)))
            required, optional = gridmod.EVENT_PARAMS[kind]
            self.keys(d, where, {"at_s", "kind"} | required, optional)
            at = self.number(d, "at_s", where)
            if at >= duration:
                raise self.fail(where + ".at_s", "%g is not before the end (%g s)" % (at, duration))
            params = {k: v for k, v in d.items() if k not in ("at_s", "kind")}
            for k in ("mw", "duration_s", "current_a", "dip_pu", "shed"):
                if k in params:
                    self.number(params, k, where, low=-math.inf if k == "mw" else 0.0,
                                positive=k != "mw")
            if kind == "comm_loss":
                ns = params["nodes"]
                if not isinstance(ns, list) or not ns or not all(isinstance(n, str) for n in ns):
                    raise self.fail(where + ".nodes", "a list of light node names is needed")
                for n in ns:
                    if n not in nodes:
                        raise self.fail(where + ".nodes", "no light node %r" % n)
            if kind == "tamper":
                dev = devices.get(params["device"])
                if dev is None or dev.kind not in ("charger", "meter"):
                    raise self.fail(where + ".device", "no charger or meter %r" % (params["device"],))
            if kind == "operator_action":
                con = devices.get(params["console"])
                if con is None or con.kind != "operator":
                    raise self.fail(where + ".console", "no operator console %r" % (params["console"],))
                if params["action"] not in ("login", "emergency-shutdown", "control"):
                    raise self.fail(where + ".action", "login, emergency-shutdown or control")
                if params["action"] == "control" and "breaker" not in params:
                    raise self.fail(where + ".breaker", "a control action names the breaker")
            ev = Event(at, kind, params)
            try:
                gridmod._check_event(spec, ev)
            except GridError as e:
                raise self.fail(where, str(e)) from None
            out.append(ev)
        return sorted(out, key=lambda e: e.at_s)

    def attacks(self, data: dict[str, Any], duration: float, devices: dict[str, DeviceSpec],
                nodes: list[LightNodeSpec], grid_names: dict[str, str]) -> list[Attack]:
        out: list[Attack] = []
        node_dev = {n.name: n.device for n in nodes}
        for where, d in self.items(data, "attack"):
            kind = d.get("kind")
            if kind not in ATTACK_PARAMS:
                raise self.fail(where + ".kind", "%r is not one of %s" % (kind, ", ".join(ATTACK_KINDS)))
            target_kind, required, optional = ATTACK_PARAMS[kind]
            base = {"name", "kind", "at_s"} | ({"target"} if target_kind else set())
            self.keys(d, where, base | required, optional)
            name = self.text(d, "name", where)
            if any(a.name == name for a in out):
                raise self.fail(where + ".name", "%r is already an attack" % name)
            at = self.number(d, "at_s", where)
            if at >= duration:
                raise self.fail(where + ".at_s", "%g is not before the end (%g s)" % (at, duration))
            target = d.get("target")
            t = where + ".target"
            if target_kind == "light_node" and target not in node_dev:
                raise self.fail(t, "no light node %r" % (target,))
            if target_kind == "pmu":
                dev = devices.get(node_dev.get(target, target)) if isinstance(target, str) else None
                if dev is None or dev.kind != "pmu":
                    raise self.fail(t, "no PMU (or light node reading one) %r" % (target,))
            if target_kind == "operator":
                dev = devices.get(target) if isinstance(target, str) else None
                if dev is None or dev.kind != "operator":
                    raise self.fail(t, "no operator console %r" % (target,))
            if target_kind == "node" and target not in FULL_NODES:
                raise self.fail(t, "one of %s" % ", ".join(FULL_NODES))
            params = {k: v for k, v in d.items() if k not in base}
            for k in ("us_per_s", "ms"):
                if k in params:
                    self.number(params, k, where, low=-math.inf)
                    if params[k] == 0:
                        raise self.fail("%s.%s" % (where, k), "0 is no attack")
            for k in ("count", "devices"):
                if k in params and (not isinstance(params[k], int) or isinstance(params[k], bool)
                                    or params[k] < 1):
                    raise self.fail("%s.%s" % (where, k), "a count >= 1 is needed")
            for k in ("rate", "every_s", "duration_s"):
                if k in params:
                    self.number(params, k, where, positive=True)
            if kind == "stolen_credential":
                h = params["hour"]
                if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h <= 23:
                    raise self.fail(where + ".hour", "an hour of day 0-23 is needed")
                brs = params["breakers"]
                if not isinstance(brs, list) or not brs:
                    raise self.fail(where + ".breakers", "a list of feeders or lines is needed")
                for b in brs:
                    if grid_names.get(b) not in ("feeder", "line"):
                        raise self.fail(where + ".breakers", "no feeder or line %r" % (b,))
            out.append(Attack(name, kind, at, target, params))
        return out

    def expectations(self, data: dict[str, Any], attacks: set[str], nodes: set[str]) -> list[Expectation]:
        known_reasons, known_flags = reasons(), flags()
        out = []
        for where, d in self.items(data, "expect"):
            kind = d.get("kind")
            if kind not in EXPECT_PARAMS:
                raise self.fail(where + ".kind", "%r is not one of %s" % (kind, ", ".join(EXPECT_KINDS)))
            required, optional = EXPECT_PARAMS[kind]
            self.keys(d, where, {"kind"} | required, optional)
            params = {k: v for k, v in d.items() if k != "kind"}
            if "within_s" in params:
                self.number(params, "within_s", where, positive=True)
            if kind == "attack_detected":
                if params["attack"] not in attacks:
                    raise self.fail(where + ".attack", "no attack %r" % (params["attack"],))
                if ("reason" in params) == ("flag" in params):
                    raise self.fail(where, "exactly one of reason and flag is needed")
                if "reason" in params and params["reason"] not in known_reasons:
                    raise self.fail(where + ".reason", "%r is not a rejection reason (%s)"
                                    % (params["reason"], ", ".join(known_reasons)))
                if "flag" in params and params["flag"] not in known_flags:
                    raise self.fail(where + ".flag", "%r is not one of %s" % (params["flag"], ", ".join(known_flags)))
            if kind in ("flag", "event_committed") and params["device"] not in nodes:
                raise self.fail(where + ".device", "no light node %r" % (params["device"],))
            if kind == "flag" and params["flag"] not in known_flags:
                raise self.fail(where + ".flag", "%r is not one of %s" % (params["flag"], ", ".join(known_flags)))
            if kind == "event_committed" and params["type"] not in event_types():
                raise self.fail(where + ".type", "%r is not one of %s"
                                % (params["type"], ", ".join(sorted(event_types()))))
            out.append(Expectation(kind, params))
        return out
