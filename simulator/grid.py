"""One small grid model that every simulated device reads, so their readings agree.

A handful of substations (buses) joined by lines, inside a larger
interconnection whose frequency they share. The model, stepped every
20 ms and deterministic per seed, has:

- a common frequency: the interconnection's swing equation (inertia H,
  load damping D) with governors (droop R, time constant Tg) and AGC
  pulling it back, driven by random load noise (a wander of some 10-20 mHz
  and a ROCOF of mHz/s in normal operation), load steps, generation losses
  (``frequency_excursion``) and under-frequency load shedding stages;
- bus voltage angles from a DC power flow over the lines (injections of
  the local generators and loads, the slack bus standing for the rest of
  the interconnection), on top of the system angle that turns at
  360 * (f - f0) degrees per second: a line's flow is
  ``(angle_from - angle_to) / x_pu * base_mva``;
- feeders, each with a breaker and definite-time overcurrent protection:
  a fault on a feeder (or a line) dips the bus voltage and drives fault
  current until the breaker trips after its delay; auto-reclose after an
  open time, lockout after the last shot; breakers opened and closed by
  events (or by operator commands).

    >>> from lightnode.simulator.grid import Grid, GridSpec, Event
    >>> g = Grid(GridSpec.small(), [Event(10.0, "load_step", {"load": "city", "mw": 80})], seed=1)
    >>> s = g.state(12.0)
    >>> round(s.freq_hz) , s.lines["north-south"].closed
    (50, True)

``Grid.state(t_s)`` takes non-decreasing times (20 ms steps or coarser);
states of the last ``history_s`` seconds are kept, so several readers
sampling a little behind the newest time get the same answer. ``Grid.log``
lists what happened (trips, recloses, load shedding) as ``GridEvent``.

A spec (``GridSpec``) is data, read from a scenario file's ``[grid]``
table by ``lightnode.simulator.scenario``; ``GridSpec.from_dict`` checks it.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lightnode.errors import LightnodeError

STEP_S = 0.02  # the model's step: one PMU frame at 50 frames/s
SQRT3 = math.sqrt(3.0)
BREAKER_S = 0.06  # a breaker's opening time after its trip command (3 cycles)
RESET_S = 30.0  # closed this long after a reclose, a feeder's reclose shots are restored

# Event kinds the grid acts on; ``comm_loss`` and ``operator_action`` other than a
# breaker command are for the runner and pass through the grid untouched.
EVENT_KINDS = ("load_step", "fault", "breaker_open", "breaker_close", "reclose",
               "frequency_excursion", "ufls", "comm_loss", "operator_action", "tamper")


class GridError(LightnodeError):
    """A grid spec or event that does not hold together (a caller's mistake, with where)."""


# -- the spec (data) ---------------------------------------------------------------------


@dataclass(frozen=True)
class BusSpec:
    name: str
    kv: float = 132.0  # line-to-line
    slack: bool = False  # the connection to the rest of the interconnection


@dataclass(frozen=True)
class LineSpec:
    name: str
    a: str  # from bus
    b: str  # to bus
    x_pu: float  # series reactance on base_mva
    trip_delay_s: float = 0.1  # distance protection, zone 1 with breaker
    reclose_s: float | None = None  # None: no auto-reclose


@dataclass(frozen=True)
class GenSpec:
    name: str
    bus: str
    mw: float


@dataclass(frozen=True)
class LoadSpec:
    name: str
    bus: str
    mw: float
    pf: float = 0.95
    ufls: bool = True  # takes part in under-frequency load shedding


@dataclass(frozen=True)
class FeederSpec:
    """A radial feeder from a bus to one load, behind a breaker with overcurrent protection."""

    name: str
    bus: str
    load: str
    kv: float | None = None  # None: the bus's voltage
    pickup_a: float = 600.0
    trip_delay_s: float = 0.3
    reclose_s: float | None = 1.0  # open time before an auto-reclose; None: no reclose
    shots: int = 1  # auto-reclose attempts before lockout


@dataclass(frozen=True)
class UflsStage:
    hz: float  # below this ...
    shed: float  # ... shed this fraction of the system's load ...
    delay_s: float = 0.1  # ... once it has stayed below for this long


@dataclass(frozen=True)
class GridSpec:
    """The grid as data: system parameters, and the buses, lines, generators, loads, feeders."""

    nominal_hz: float = 50.0
    system_mw: float = 5000.0  # load of the interconnection our buses sit in
    inertia_s: float = 5.0  # H, on system_mw
    damping: float = 1.0  # D: % load change per % frequency change
    droop: float = 0.05  # R
    governor_s: float = 6.0  # Tg
    agc_s: float = 60.0  # secondary control pulls the frequency back over about this long
    noise_mw: float = 20.0  # standard deviation of the interconnection's random load wander
    noise_s: float = 30.0  # its correlation time
    base_mva: float = 100.0  # base of the lines' per-unit reactances
    buses: tuple[BusSpec, ...] = ()
    lines: tuple[LineSpec, ...] = ()
    gens: tuple[GenSpec, ...] = ()
    loads: tuple[LoadSpec, ...] = ()
    feeders: tuple[FeederSpec, ...] = ()
    ufls: tuple[UflsStage, ...] = ()

    @staticmethod
    def small(nominal_hz: float = 50.0) -> GridSpec:
        """Three 132 kV substations in a triangle, a generator, two loads on feeders."""
        return GridSpec.from_dict(GridSpec.small_dict(nominal_hz))

    @staticmethod
    def small_dict(nominal_hz: float = 50.0) -> dict[str, Any]:
        """``small()`` as the data a scenario's [grid] table gives (a fresh copy each call)."""
        return {
            "nominal_hz": nominal_hz,
            "bus": [{"name": "north", "slack": True}, {"name": "south"}, {"name": "east"}],
            "line": [{"name": "north-south", "from": "north", "to": "south", "x_pu": 0.08},
                     {"name": "south-east", "from": "south", "to": "east", "x_pu": 0.06},
                     {"name": "north-east", "from": "north", "to": "east", "x_pu": 0.1}],
            "gen": [{"name": "east-gen", "bus": "east", "mw": 120}],
            "load": [{"name": "city", "bus": "south", "mw": 180}, {"name": "town", "bus": "east", "mw": 60}],
            "feeder": [{"name": "f-city", "bus": "south", "load": "city", "pickup_a": 2000},
                       {"name": "f-town", "bus": "east", "load": "town", "pickup_a": 600}],
            "ufls": [{"hz": 49.0, "shed": 0.05}, {"hz": 48.8, "shed": 0.05}],
        }

    @staticmethod
    def from_dict(d: dict[str, Any], where: str = "grid") -> GridSpec:
        """A spec from a scenario file's ``[grid]`` table; GridError names the key that is wrong."""
        return _spec_from_dict(d, where)

    def bus(self, name: str) -> BusSpec:
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)

    def names(self) -> dict[str, str]:
        """Every named thing of the grid and what it is (bus, line, gen, load, feeder)."""
        out: dict[str, str] = {}
        for kind, items in (("bus", self.buses), ("line", self.lines), ("gen", self.gens),
                            ("load", self.loads), ("feeder", self.feeders)):
            for it in items:
                out[it.name] = kind
        return out


_SYSTEM_KEYS: dict[str, type | tuple[type, ...]] = {
    "nominal_hz": (int, float), "system_mw": (int, float), "inertia_s": (int, float),
    "damping": (int, float), "droop": (int, float), "governor_s": (int, float),
    "agc_s": (int, float), "noise_mw": (int, float), "noise_s": (int, float),
    "base_mva": (int, float)}
_TABLES: dict[str, tuple[type, dict[str, tuple[str, type | tuple[type, ...]]], set[str]]] = {
    # table: (spec class, {file key: (field, type)}, required file keys)
    "bus": (BusSpec, {"name": ("name", str), "kv": ("kv", (int, float)), "slack": ("slack", bool)},
            {"name"}),
    "line": (LineSpec, {"name": ("name", str), "from": ("a", str), "to": ("b", str),
                        "x_pu": ("x_pu", (int, float)), "trip_delay_s": ("trip_delay_s", (int, float)),
                        "reclose_s": ("reclose_s", (int, float))}, {"name", "from", "to", "x_pu"}),
    "gen": (GenSpec, {"name": ("name", str), "bus": ("bus", str), "mw": ("mw", (int, float))},
            {"name", "bus", "mw"}),
    "load": (LoadSpec, {"name": ("name", str), "bus": ("bus", str), "mw": ("mw", (int, float)),
                        "pf": ("pf", (int, float)), "ufls": ("ufls", bool)}, {"name", "bus", "mw"}),
    "feeder": (FeederSpec, {"name": ("name", str), "bus": ("bus", str), "load": ("load", str),
                            "kv": ("kv", (int, float)), "pickup_a": ("pickup_a", (int, float)),
                            "trip_delay_s": ("trip_delay_s", (int, float)),
                            "reclose_s": ("reclose_s", (int, float)), "shots": ("shots", int)},
               {"name", "bus", "load"}),
    "ufls": (UflsStage, {"hz": ("hz", (int, float)), "shed": ("shed", (int, float)),
                         "delay_s": ("delay_s", (int, float))}, {"hz", "shed"}),
}


def _typed(v: Any, t: type | tuple[type, ...]) -> bool:
    if isinstance(v, bool) and t is not bool and (not isinstance(t, tuple) or bool not in t):
        return False
    return isinstance(v, t)


def _spec_from_dict(d: dict[str, Any], where: str) -> GridSpec:
    if not isinstance(d, dict):
        raise GridError("%s: a table is needed" % where)
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k in _SYSTEM_KEYS:
            if not _typed(v, _SYSTEM_KEYS[k]) or not math.isfinite(v) or v <= 0:
                if not (k == "noise_mw" and _typed(v, (int, float)) and v == 0):
                    raise GridError("%s.%s: a positive number is needed, not %r" % (where, k, v))
            kw[k] = float(v)
        elif k in _TABLES:
            cls, fields, required = _TABLES[k]
            if not isinstance(v, list):
                raise GridError("%s.%s: an array of tables is needed" % (where, k))
            items = []
            for i, item in enumerate(v):
                at = "%s.%s[%d]" % (where, k, i)
                if not isinstance(item, dict):
                    raise GridError("%s: a table is needed" % at)
                unknown = sorted(set(item) - set(fields))
                if unknown:
                    raise GridError("%s.%s: unknown key (known: %s)" % (at, unknown[0], ", ".join(sorted(fields))))
                missing = sorted(required - set(item))
                if missing:
                    raise GridError("%s.%s: missing" % (at, missing[0]))
                args: dict[str, Any] = {}
                for fk, fv in item.items():
                    name, t = fields[fk]
                    if not _typed(fv, t):
                        raise GridError("%s.%s: %r is not of the right type" % (at, fk, fv))
                    if t == (int, float):
                        fv = float(fv)
                        if not math.isfinite(fv) or fv <= 0:
                            raise GridError("%s.%s: a positive number is needed, not %r" % (at, fk, fv))
                    args[name] = fv
                items.append(cls(**args))
            kw[{"bus": "buses", "line": "lines", "gen": "gens", "load": "loads", "feeder": "feeders",
                "ufls": "ufls"}[k]] = tuple(items)
        else:
            known = sorted(set(_SYSTEM_KEYS) | set(_TABLES))
            raise GridError("%s.%s: unknown key (known: %s)" % (where, k, ", ".join(known)))
    spec = GridSpec(**kw)
    _check_refs(spec, where)
    return spec


def _check_refs(spec: GridSpec, where: str) -> None:
    seen: dict[str, str] = {}
    groups: list[tuple[str, tuple[Any, ...]]] = [
        ("bus", spec.buses), ("line", spec.lines), ("gen", spec.gens), ("load", spec.loads),
        ("feeder", spec.feeders)]
    for kind, items in groups:
        for i, it in enumerate(items):
            if it.name in seen:
                raise GridError("%s.%s[%d].name: %r is already a %s" % (where, kind, i, it.name, seen[it.name]))
            seen[it.name] = kind
    if not spec.buses:
        raise GridError("%s.bus: at least one bus is needed" % where)
    slacks = [b.name for b in spec.buses if b.slack]
    if len(slacks) != 1:
        raise GridError("%s.bus: exactly one bus has slack = true (the interconnection), not %d"
                        % (where, len(slacks)))
    buses = {b.name for b in spec.buses}
    for i, ln in enumerate(spec.lines):
        for key, bus in (("from", ln.a), ("to", ln.b)):
            if bus not in buses:
                raise GridError("%s.line[%d].%s: no bus %r" % (where, i, key, bus))
        if ln.a == ln.b:
            raise GridError("%s.line[%d]: a line joins two different buses" % (where, i))
    for kind, placed in groups[2:]:
        for i, it in enumerate(placed):
            if it.bus not in buses:
                raise GridError("%s.%s[%d].bus: no bus %r" % (where, kind, i, it.bus))
    loads = {ld.name: ld for ld in spec.loads}
    fed: set[str] = set()
    for i, f in enumerate(spec.feeders):
        if f.load not in loads:
            raise GridError("%s.feeder[%d].load: no load %r" % (where, i, f.load))
        if loads[f.load].bus != f.bus:
            raise GridError("%s.feeder[%d]: load %r is on bus %r, not %r" % (where, i, f.load,
                                                                             loads[f.load].bus, f.bus))
        if f.load in fed:
            raise GridError("%s.feeder[%d].load: %r already has a feeder" % (where, i, f.load))
        fed.add(f.load)
    for i, st in enumerate(spec.ufls):
        if not 0 < st.shed < 1 or not st.hz < spec.nominal_hz:
            raise GridError("%s.ufls[%d]: a stage sheds a fraction below 1, below nominal frequency"
                            % (where, i))


# -- events and states ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something scheduled to happen at ``at_s``: a grid event (see EVENT_KINDS) and its params."""

    at_s: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GridEvent:
    """Something that happened in the grid: a trip, a reclose, a lockout, a shed stage ..."""

    t_s: float
    kind: str  # fault, fault-cleared, trip, open, close, reclose, lockout, ufls, load-step, excursion
    source: str  # the feeder, line, load or stage it concerns
    detail: str = ""


@dataclass(frozen=True)
class BusState:
    v_pu: float
    angle_deg: float  # absolute: the system angle plus the power-flow angle, in [-180, 180)
    energized: bool = True


@dataclass(frozen=True)
class LineState:
    p_mw: float  # from ``a`` to ``b``
    closed: bool
    fault: bool = False


@dataclass(frozen=True)
class FeederState:
    closed: bool
    trip: bool  # the protection's trip output (PTRC Tr) is on
    fault: bool  # a fault on the feeder is drawing current now
    lockout: bool
    p_mw: float
    i_a: float  # phase current
    v_pu: float  # at the feeder's head (its bus)


@dataclass(frozen=True)
class LoadState:
    mw: float  # served now
    served: bool  # energised (feeder closed, bus energised)
    mwh: float  # energy served since t=0


@dataclass(frozen=True)
class GridState:
    t_s: float
    freq_hz: float
    rocof_hz_s: float
    angle_deg: float  # the system angle: the slack bus's angle before its power-flow offset
    buses: dict[str, BusState]
    lines: dict[str, LineState]
    feeders: dict[str, FeederState]
    loads: dict[str, LoadState]
    events: tuple[GridEvent, ...] = ()  # what happened in the step that ended at t_s


# -- the model ------------------------------------------------------------------------------


class _Breaker:
    """One breaker with its protection: closed or open, trip timer, reclose timer, shots left."""

    def __init__(self, name: str, trip_delay_s: float, reclose_s: float | None, shots: int) -> None:
        self.name = name
        self.trip_delay_s = trip_delay_s
        self.reclose_s = reclose_s
        self.shots = shots
        self.left = shots
        self.closed = True
        self.lockout = False
        self.trip = False
        self.over_s = 0.0  # time the current has been above pickup
        self.open_at: float | None = None  # when the breaker contacts will have parted
        self.opened_s: float | None = None  # when it opened (for reclose)
        self.closed_s = 0.0  # when it last closed (for the shots' reset)


class Grid:
    """The grid model stepping through time (see the module's docstring)."""

    def __init__(self, spec: GridSpec, events: list[Event] | tuple[Event, ...] = (), seed: int = 1,
                 history_s: float = 600.0) -> None:
        self.spec = spec
        self.seed = seed
        self.events = sorted(events, key=lambda e: e.at_s)
        for e in self.events:
            _check_event(spec, e)
        self.log: list[GridEvent] = []
        self._rnd = random.Random(seed)
        self._lock = threading.Lock()
        self._history: deque[GridState] = deque(maxlen=max(2, int(history_s / STEP_S)))
        self._k = -1  # the newest step computed
        self._next_event = 0
        f0 = spec.nominal_hz
        s = spec.system_mw
        self._m = 2 * spec.inertia_s * s / f0  # MW s / Hz
        self._d = spec.damping * s / f0  # MW / Hz
        self._beta = s / (spec.droop * f0)  # MW / Hz of governor response
        self._df = 0.0
        self._pm = 0.0  # governor response, MW
        self._pref = 0.0  # AGC set point change, MW
        self._noise = 0.0  # random load wander, MW
        self._lost_mw = 0.0  # generation lost in the interconnection
        self._theta = self._rnd.uniform(-180.0, 180.0)
        self._load_mw = {ld.name: ld.mw for ld in spec.loads}  # demand, after steps
        self._load_nominal = sum(ld.mw for ld in spec.loads)
        self._load_mwh = {ld.name: 0.0 for ld in spec.loads}
        self._shed = 0.0  # fraction of load shed by UFLS (and manual shedding)
        self._stage_done = [False] * len(spec.ufls)
        self._stage_below = [0.0] * len(spec.ufls)
        self._feeder_of = {f.load: f for f in spec.feeders}
        self._breakers: dict[str, _Breaker] = {}
        for f in spec.feeders:
            self._breakers[f.name] = _Breaker(f.name, f.trip_delay_s, f.reclose_s, f.shots)
        for ln in spec.lines:
            self._breakers[ln.name] = _Breaker(ln.name, ln.trip_delay_s, ln.reclose_s,
                                               1 if ln.reclose_s is not None else 0)
        self._faults: dict[str, dict[str, Any]] = {}  # feeder/line -> fault params (with until)
        self._bus_noise = {b.name: 0.0 for b in spec.buses}
        self._flow_cache: dict[frozenset[str], tuple[list[str], list[list[float]]]] = {}
        self._prev_df = 0.0
        self._energized: set[str] | None = None

    # -- reading -----------------------------------------------------------------

    def state(self, t_s: float) -> GridState:
        """The grid at ``t_s`` (rounded to the 20 ms step); times must not go back past the history."""
        if t_s < 0 or not math.isfinite(t_s):
            raise ValueError("t_s must be a finite time >= 0, not %r" % (t_s,))
        k = int(round(t_s / STEP_S))
        with self._lock:
            while self._k < k:
                self._step()
            oldest = self._k - len(self._history) + 1
            if k < oldest:
                raise ValueError("t=%.3f s is older than the grid's history (from %.3f s)"
                                 % (t_s, oldest * STEP_S))
            return self._history[k - oldest]

    @property
    def newest_s(self) -> float:
        return max(self._k, 0) * STEP_S

    # -- one step ------------------------------------------------------------------

    def _step(self) -> None:
        k = self._k + 1
        t = k * STEP_S
        h = STEP_S
        spec = self.spec
        happened: list[GridEvent] = []
        while self._next_event < len(self.events) and self.events[self._next_event].at_s <= t + 1e-9:
            self._apply(self.events[self._next_event], t, happened)
            self._next_event += 1

        if k > 0:
            # Random load wander (an Ornstein-Uhlenbeck process) and the swing equation.
            g = self._rnd.gauss
            tau = spec.noise_s
            self._noise += -self._noise * h / tau + spec.noise_mw * math.sqrt(2 * h / tau) * g(0.0, 1.0)
        served_mw, demand_local = self._loads(t)
        shed_mw = self._shed * spec.system_mw
        unserved_local = demand_local - sum(served_mw.values())
        # Local load above (or below) nominal, and loads lost to open feeders, change the
        # interconnection's balance; shed load is taken out at the system's scale.
        local_delta = demand_local - self._load_nominal - unserved_local
        local_shed = sum(self._load_mw[ld.name] for ld in spec.loads if ld.ufls) * self._shed
        p_dist = local_delta + local_shed + self._noise + self._lost_mw - shed_mw
        if k > 0:
            acc = (self._pm - p_dist - self._d * self._df) / self._m
            self._pm += h * (-self._beta * self._df + self._pref - self._pm) / spec.governor_s
            self._pref += h * (-self._beta * self._df) / spec.agc_s
            self._prev_df = self._df
            self._df += h * acc
            self._theta = (self._theta + 360.0 * self._df * h + 180.0) % 360.0 - 180.0
        rocof = (self._df - self._prev_df) / h if k > 0 else 0.0
        freq = spec.nominal_hz + self._df

        self._ufls(freq, t, h, happened)
        self._protection(t, h, happened)
        served_mw, _ = self._loads(t)
        for name, mw in served_mw.items():
            self._load_mwh[name] += mw * h / 3600.0

        # Power flow over the closed lines of the slack's island.
        inj = {b.name: 0.0 for b in spec.buses}
        for gen in spec.gens:
            inj[gen.bus] += gen.mw * (1.0 + self._pm / spec.system_mw)
        for ld in spec.loads:
            inj[ld.bus] -= served_mw[ld.name]
        closed = frozenset(ln.name for ln in spec.lines if self._breakers[ln.name].closed)
        angles, energized = self._flow(closed, inj)
        lines = {}
        for ln in spec.lines:
            br = self._breakers[ln.name]
            p = 0.0
            if br.closed and ln.a in angles and ln.b in angles:
                p = math.radians(angles[ln.a] - angles[ln.b]) / ln.x_pu * spec.base_mva
            lines[ln.name] = LineState(p, br.closed, ln.name in self._faults)

        # Voltages: a slow wander per bus, dips near a fault that is drawing current.
        dips = self._dips()
        buses = {}
        for b in spec.buses:
            self._bus_noise[b.name] += -self._bus_noise[b.name] * h / 60.0 + 0.002 * math.sqrt(
                2 * h / 60.0) * self._rnd.gauss(0.0, 1.0)
            if b.name not in energized:
                buses[b.name] = BusState(0.0, 0.0, False)
                continue
            v = (1.0 + self._bus_noise[b.name]) * dips.get(b.name, 1.0)
            a = (self._theta + angles[b.name] + 180.0) % 360.0 - 180.0
            buses[b.name] = BusState(v, a, True)

        feeders = {}
        for f in spec.feeders:
            br = self._breakers[f.name]
            bus = buses[f.bus]
            kv = f.kv or spec.bus(f.bus).kv
            ld = next(x for x in spec.loads if x.name == f.load)
            p = served_mw[f.load]
            fault = f.name in self._faults and br.closed and bus.energized
            if fault:
                i = float(self._faults[f.name].get("current_a", 8.0 * f.pickup_a))
            elif bus.energized and bus.v_pu > 0:
                # Loads behave as constant impedances through a dip: current falls with voltage.
                i = p * 1e6 * bus.v_pu / (SQRT3 * kv * 1e3 * ld.pf)
            else:
                i = 0.0
            feeders[f.name] = FeederState(br.closed, br.trip, fault, br.lockout, p, i, bus.v_pu)
        loads = {ld.name: LoadState(served_mw[ld.name], served_mw[ld.name] > 0 or
                                    (self._load_mw[ld.name] <= 0 and ld.bus in energized),
                                    self._load_mwh[ld.name]) for ld in spec.loads}
        st = GridState(t, freq, rocof, self._theta, buses, lines, feeders, loads, tuple(happened))
        self.log.extend(happened)
        self._history.append(st)
        self._k = k

    def _loads(self, t: float) -> tuple[dict[str, float], float]:
        """Served MW per load now, and the local demand before open feeders take any away."""
        spec = self.spec
        served: dict[str, float] = {}
        demand = 0.0
        energized = self._energized
        for ld in spec.loads:
            mw = self._load_mw[ld.name] * (1.0 + self._noise / spec.system_mw)
            if ld.ufls:
                mw *= 1.0 - self._shed
            demand += mw
            f = self._feeder_of.get(ld.name)
            on = (f is None or self._breakers[f.name].closed) and (energized is None or ld.bus in energized)
            served[ld.name] = mw if on else 0.0
        return served, demand

    def _flow(self, closed: frozenset[str], inj: dict[str, float]) -> tuple[dict[str, float], set[str]]:
        """DC power flow: angles (deg, relative to the slack bus) of the slack's island."""
        spec = self.spec
        cached = self._flow_cache.get(closed)
        if cached is None:
            slack = next(b.name for b in spec.buses if b.slack)
            adj: dict[str, list[str]] = {b.name: [] for b in spec.buses}
            for ln in spec.lines:
                if ln.name in closed:
                    adj[ln.a].append(ln.b)
                    adj[ln.b].append(ln.a)
            island = {slack}
            todo = [slack]
            while todo:
                for nb in adj[todo.pop()]:
                    if nb not in island:
                        island.add(nb)
                        todo.append(nb)
            order = [b.name for b in spec.buses if b.name in island and b.name != slack]
            idx = {n: i for i, n in enumerate(order)}
            n = len(order)
            bm = [[0.0] * n for _ in range(n)]
            for ln in spec.lines:
                if ln.name not in closed or ln.a not in island:
                    continue
                y = 1.0 / ln.x_pu
                for u, v in ((ln.a, ln.b), (ln.b, ln.a)):
                    if u in idx:
                        bm[idx[u]][idx[u]] += y
                        if v in idx:
                            bm[idx[u]][idx[v]] -= y
            cached = ([slack, *order], _inverse(bm))
            self._flow_cache[closed] = cached
        names, binv = cached
        slack, order = names[0], names[1:]
        p = [inj[n] / spec.base_mva for n in order]
        angles = {slack: 0.0}
        for i, bus in enumerate(order):
            angles[bus] = math.degrees(sum(binv[i][j] * p[j] for j in range(len(order))))
        self._energized = set(angles)
        return angles, set(angles)

    def _dips(self) -> dict[str, float]:
        """Per bus, the factor a fault drawing current puts on its voltage (halving per line away)."""
        spec = self.spec
        out: dict[str, float] = {}
        for name, fp in self._faults.items():
            br = self._breakers[name]
            if not br.closed:
                continue
            depth = 1.0 - float(fp.get("dip_pu", 0.4))
            kinds = spec.names()
            if kinds[name] == "feeder":
                near = [next(f.bus for f in spec.feeders if f.name == name)]
            else:
                ln = next(x for x in spec.lines if x.name == name)
                near = [ln.a, ln.b]
            hops = {b: 0 for b in near}
            todo = list(near)
            while todo:
                u = todo.pop(0)
                for ln in spec.lines:
                    if not self._breakers[ln.name].closed:
                        continue
                    for a, b in ((ln.a, ln.b), (ln.b, ln.a)):
                        if a == u and b not in hops:
                            hops[b] = hops[u] + 1
                            todo.append(b)
            for b, n in hops.items():
                out[b] = min(out.get(b, 1.0), 1.0 - depth * 0.5 ** n)
        return out

    def _protection(self, t: float, h: float, happened: list[GridEvent]) -> None:
        spec = self.spec
        for name, fp in list(self._faults.items()):
            until = fp.get("until")
            if until is not None and t >= until:
                del self._faults[name]
                happened.append(GridEvent(t, "fault-cleared", name))
        for name, br in self._breakers.items():
            if br.open_at is not None and t >= br.open_at:
                br.closed = False
                br.open_at = None
                br.opened_s = t
                happened.append(GridEvent(t, "open", name, "by protection"))
            fault = name in self._faults and br.closed
            if fault:
                br.over_s += h
                if br.over_s >= br.trip_delay_s - 1e-9 and not br.trip:
                    br.trip = True
                    br.open_at = t + BREAKER_S
                    happened.append(GridEvent(t, "trip", name, "overcurrent %.2f s" % br.over_s))
            else:
                br.over_s = 0.0
                if br.trip and not br.closed:
                    br.trip = False  # the trip output resets once the current has gone
            if (not br.closed and br.opened_s is not None and br.reclose_s is not None
                    and not br.lockout and br.left > 0 and t - br.opened_s >= br.reclose_s - 1e-9):
                br.left -= 1
                br.closed = True
                br.closed_s = t
                br.opened_s = None
                happened.append(GridEvent(t, "reclose", name, "%d shot(s) left" % br.left))
            elif (not br.closed and br.opened_s is not None and not br.lockout
                  and (br.reclose_s is None or br.left == 0) and br.shots > 0
                  and name in self._faults):
                br.lockout = True
                happened.append(GridEvent(t, "lockout", name))
            if br.closed and br.left < br.shots and t - br.closed_s >= RESET_S:
                br.left = br.shots
        _ = spec

    def _ufls(self, freq: float, t: float, h: float, happened: list[GridEvent]) -> None:
        for i, st in enumerate(self.spec.ufls):
            if self._stage_done[i]:
                continue
            if freq < st.hz:
                self._stage_below[i] += h
                if self._stage_below[i] >= st.delay_s - 1e-9:
                    self._stage_done[i] = True
                    self._shed = min(0.9, self._shed + st.shed)
                    happened.append(GridEvent(t, "ufls", "stage %d" % (i + 1),
                                              "below %.2f Hz: shed %.0f%% of load" % (st.hz, st.shed * 100)))
            else:
                self._stage_below[i] = 0.0

    def _apply(self, e: Event, t: float, happened: list[GridEvent]) -> None:
        p = e.params
        if e.kind == "load_step":
            self._load_mw[p["load"]] = max(0.0, self._load_mw[p["load"]] + float(p["mw"]))
            happened.append(GridEvent(t, "load-step", p["load"], "%+.1f MW" % float(p["mw"])))
        elif e.kind == "frequency_excursion":
            self._lost_mw += float(p["mw"])
            happened.append(GridEvent(t, "excursion", "interconnection",
                                      "%.0f MW of generation lost" % float(p["mw"])))
            if "duration_s" in p:  # restored (as a scheduled negative loss)
                self._schedule(Event(e.at_s + float(p["duration_s"]), "frequency_excursion",
                                     {"mw": -float(p["mw"])}))
        elif e.kind == "fault":
            name = str(p.get("feeder") or p.get("line"))
            fp = dict(p)
            if "duration_s" in p:
                fp["until"] = e.at_s + float(p["duration_s"])
            self._faults[name] = fp
            happened.append(GridEvent(t, "fault", name, "permanent" if "duration_s" not in p
                                      else "%.2f s" % float(p["duration_s"])))
        elif e.kind in ("breaker_open", "breaker_close", "reclose") or (
                e.kind == "operator_action" and "breaker" in p):
            br = self._breakers[p["breaker"]]
            close = e.kind in ("breaker_close", "reclose") or (
                e.kind == "operator_action" and not p.get("open", True))
            why = "operator %s" % p.get("console", "") if e.kind == "operator_action" else e.kind
            if close and not br.closed:
                br.closed, br.lockout, br.trip = True, False, False
                br.closed_s, br.opened_s, br.left = t, None, br.shots
                happened.append(GridEvent(t, "close", br.name, why))
            elif not close and br.closed:
                br.closed, br.opened_s, br.open_at = False, None, None
                happened.append(GridEvent(t, "open", br.name, why))
        elif e.kind == "ufls":
            self._shed = min(0.9, self._shed + float(p["shed"]))
            happened.append(GridEvent(t, "ufls", "manual", "shed %.0f%% of load" % (float(p["shed"]) * 100)))

    def _schedule(self, e: Event) -> None:
        rest = self.events[self._next_event + 1:]
        rest.append(e)
        rest.sort(key=lambda x: x.at_s)
        self.events = self.events[:self._next_event + 1] + rest


def _inverse(m: list[list[float]]) -> list[list[float]]:
    """Gauss-Jordan inverse of a small symmetric positive definite matrix (the reduced B)."""
    n = len(m)
    a = [row[:] + [1.0 if i == j else 0.0 for j in range(n)] for i, row in enumerate(m)]
    for c in range(n):
        piv = max(range(c, n), key=lambda r: abs(a[r][c]))
        a[c], a[piv] = a[piv], a[c]
        d = a[c][c]
        if abs(d) < 1e-12:
            raise GridError("the lines' reactances make a singular network")
        a[c] = [x / d for x in a[c]]
        for r in range(n):
            if r != c and a[r][c] != 0.0:
                f = a[r][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c], strict=True)]
    return [row[n:] for row in a]


# What each grid event kind takes: required keys, optional keys.
EVENT_PARAMS: dict[str, tuple[set[str], set[str]]] = {
    "load_step": ({"load", "mw"}, set()),
    "fault": (set(), {"feeder", "line", "duration_s", "current_a", "dip_pu"}),
    "breaker_open": ({"breaker"}, set()),
    "breaker_close": ({"breaker"}, set()),
    "reclose": ({"breaker"}, set()),
    "frequency_excursion": ({"mw"}, {"duration_s"}),
    "ufls": ({"shed"}, set()),
    "comm_loss": ({"nodes", "duration_s"}, set()),
    "operator_action": ({"console", "action"}, {"breaker", "open", "target", "hour"}),
    "tamper": ({"device"}, {"on"}),
}


def _check_event(spec: GridSpec, e: Event) -> None:
    """GridError for an event the grid cannot act on (names that are not in the spec)."""
    if e.kind not in EVENT_KINDS:
        raise GridError("event kind %r is not one of %s" % (e.kind, ", ".join(EVENT_KINDS)))
    if not math.isfinite(e.at_s) or e.at_s < 0:
        raise GridError("event at_s %r: a time >= 0 is needed" % (e.at_s,))
    names = spec.names()
    p = e.params
    if e.kind == "load_step" and names.get(p.get("load", "")) != "load":
        raise GridError("load_step.load: no load %r" % (p.get("load"),))
    if e.kind == "fault":
        if ("feeder" in p) == ("line" in p):
            raise GridError("fault: exactly one of feeder and line is needed")
        what = "feeder" if "feeder" in p else "line"
        if names.get(p[what]) != what:
            raise GridError("fault.%s: no %s %r" % (what, what, p[what]))
    if "breaker" in p and e.kind in ("breaker_open", "breaker_close", "reclose", "operator_action"):
        if names.get(p["breaker"]) not in ("feeder", "line"):
            raise GridError("%s.breaker: no feeder or line %r" % (e.kind, p["breaker"]))
