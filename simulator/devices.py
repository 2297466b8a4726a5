"""The field devices on the simulated grid, described as data and driven by one ``Grid``.

Every device is a ``SimDevice``: a name, a kind, a place on the grid (bus,
line, feeder or load, from the scenario's ``DeviceSpec``), a point map
(``drivers/maps/*.json``, the same map its light node reads with), and a
clock of its own. What it measures comes from the grid's state at the true
simulation time; the time it *says* is its own clock's, so a GPS-spoofed
PMU's timestamps and phasor angles move the way a real spoofed receiver's
do (below). ``sample(t_s)`` gives ``{point id: value}`` in the map's units
for emulated light nodes (no server, fast enough for fleets); ``serve()``
serves the device the real way through the simulator's servers:

| kind | served by | the light node reads it with |
|---|---|---|
| ``pmu`` | ``pmu_server.PmuServer`` (C37.118.2 over TCP, 50 frames/s) | ``drivers.c37118`` |
| ``relay`` | ``mms_server.MmsServer`` (libiec61850: XCBR position, PTRC trip, MMXU; reports) | ``drivers.iec61850`` |
| ``meter`` | ``modbus_server.MeterServer`` (pymodbus, TCP or RTU) | ``drivers.modbus`` |
| ``charger`` | ``modbus_server.MeterServer`` with ``charger_modbus.json`` | ``drivers.modbus`` |
| ``scada`` | its meter in RTU on a ``PtyBus``, polled by ``ScadaPoller``; the tap end for the light node | ``drivers.modbus.tap`` |
| ``operator`` | nothing to serve: ``OperatorConsole`` signs operator actions | ``lightnode.node.operators`` |

    >>> from lightnode.simulator import scenario, devices
    >>> sc = scenario.load("substation")
    >>> grid = sc.make_grid()
    >>> devs = devices.make_devices(sc, grid)        # attacks (GPS) already in the PMUs' clocks
    >>> v = devs["pmu-north"].sample(1.0)             # {1: 50.00.., 3: 76210.., 4: angle, "t_us": ...}
    >>> with devs["meter-1"].serve() as ep:          # a pymodbus server on 127.0.0.1
    ...     ep.host, ep.port, ep.unit

Time: ``t_s`` is simulation time, seconds from the scenario's start; the
device's clock says ``clock_us(t_s)`` = ``t0_us + t_s * 1e6 + error(t_s)``.
A served device reads the simulation time from ``serve(clock=...)``, a
callable giving ``t_s`` now (default: wall time since ``serve()``).

GPS spoofing: ``set_clock_error(offset_us, drift_us_per_s, at_s)`` makes
the clock error ``offset_us + drift_us_per_s * (t - at_s)`` from ``at_s``
on. A PMU stamps each frame with its own clock and computes each phasor
against a reference cosine at its own (wrong) time, so a clock ahead by
``e`` seconds shows every phasor angle turned by ``-360 * f0 * e`` degrees
(f0 the nominal frequency: 1 ms is -18 degrees at 50 Hz, 50 us/s is -0.9
degrees a second) and timestamps ``e`` later than the frame's true instant.

Values a relay gives: XCBR position as the Dbpos integer (2 on = closed,
1 off = open), PTRC trip 1 or 0; a charger's state 0 available, 1
charging; its tamper switch 1 when the enclosure was opened (a ``tamper``
event). Energy registers are integrals of the grid's served energy, so
they never go back and are the same whichever order devices are sampled in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightnode.simulator import signals
from lightnode.simulator.grid import SQRT3, Grid, GridState

MAPS = Path(__file__).resolve().parent.parent / "drivers" / "maps"
MAP_FILES = {"pmu": "pmu_c37118.json", "relay": "relay_mms.json", "meter": "meter_modbus.json",
             "charger": "charger_modbus.json", "scada": "meter_tap.json"}
_NOISE_N = 4096  # size of each device's table of normal deviates


@dataclass
class Endpoint:
    """Where a served device answers: what a light node (or a probe) connects to."""

    protocol: str  # c37118, mms, modbus-tcp, modbus-rtu, modbus-tap, none
    host: str | None = None
    port: int | None = None
    path: str | None = None  # a pty (RTU line, or the tap's end of an RS-485 bus)
    idcode: int | None = None  # C37.118
    unit: int | None = None  # Modbus
    map_path: Path | None = None
    server: Any = None  # the server object (PmuServer, MmsServer, MeterServer), for tests


class SimDevice:
    """One device (see the module's docstring); made by ``make_devices`` or directly."""

    def __init__(self, spec: Any, grid: Grid, t0_us: int = signals.T0_US, seed: int = 1) -> None:
        self.spec = spec  # scenario.DeviceSpec
        self.name: str = spec.name
        self.kind: str = spec.kind
        self.params: dict[str, Any] = dict(spec.params)
        self.grid = grid
        self.t0_us = t0_us
        self.map_path = MAPS / MAP_FILES[self.kind] if self.kind in MAP_FILES else None
        self.map: dict[str, Any] = json.loads(self.map_path.read_text()) if self.map_path else {}
        h = int.from_bytes(hashlib.sha256(("%d/%s" % (seed, self.name)).encode()).digest()[:8], "big")
        rnd = random.Random(h)
        self._noise = [rnd.gauss(0.0, 1.0) for _ in range(_NOISE_N)]
        self._unb = [rnd.gauss(0.0, 1.0) for _ in range(8)]  # fixed per-phase unbalance
        self._clock: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]  # (from_s, offset_us, drift)
        self._last_t = 0.0
        self._tamper: list[tuple[float, bool]] = []
        self.rate = int(self.params.get("rate", 50))
        self._sessions = self._make_sessions(rnd) if self.kind == "charger" else []

    # -- the device's clock --------------------------------------------------------

    def set_clock_error(self, offset_us: float, drift_us_per_s: float = 0.0,
                        at_s: float | None = None) -> None:
        """From ``at_s`` on, the clock is off by ``offset_us + drift_us_per_s * (t - at_s)``.

        ``at_s`` None means now: the latest time the device was sampled at
        (or the grid's newest state). Setting it again replaces what was set
        from that time on.
        """
        if at_s is None:
            at_s = max(self._last_t, self.grid.newest_s)
        self._clock = [c for c in self._clock if c[0] < at_s] + [(float(at_s), float(offset_us),
                                                                  float(drift_us_per_s))]

    def clock_error_us(self, t_s: float) -> float:
        """How far the device's clock is ahead of true time at ``t_s``, in microseconds."""
        at, off, drift = self._clock[0]
        for c in self._clock:
            if c[0] <= t_s:
                at, off, drift = c
        return off + drift * (t_s - at)

    def clock_us(self, t_s: float) -> int:
        """The device's own time at true simulation time ``t_s``, us since 1970."""
        return self.t0_us + int(round(t_s * 1e6 + self.clock_error_us(t_s)))

    def apply_attack(self, kind: str, at_s: float, params: dict[str, Any]) -> None:
        """Put a GPS attack into this device's clock: a step (``ms``) or a drift (``us_per_s``)."""
        now = self.clock_error_us(at_s)
        drift = next(c[2] for c in reversed(self._clock) if c[0] <= at_s) if self._clock else 0.0
        if kind == "gps_step":
            self.set_clock_error(now + float(params["ms"]) * 1000.0, drift, at_s)
        elif kind == "gps_drift":
            self.set_clock_error(now, drift + float(params["us_per_s"]), at_s)
        else:
            raise ValueError("%r is not an attack on a device's clock" % kind)

    def set_tamper(self, at_s: float, on: bool = True) -> None:
        """The enclosure's tamper switch from ``at_s`` on (a charger's or meter's)."""
        self._tamper.append((float(at_s), bool(on)))
        self._tamper.sort()

    def tampered(self, t_s: float) -> bool:
        on = False
        for at, v in self._tamper:
            if at <= t_s:
                on = v
        return on

    # -- what it measures -----------------------------------------------------------

    def _n(self, k: int, j: int) -> float:
        return self._noise[(k * 37 + j * 101) % _NOISE_N]

    def sample(self, t_s: float) -> dict[Any, float]:
        """What the device measures at true time ``t_s``: ``{point id: value}`` in the map's units,
        and under ``"t_us"`` the time its own clock gives the sample (``clock_us(t_s)``)."""
        st = self.grid.state(t_s)
        if t_s > self._last_t:
            self._last_t = t_s
        k = int(round(t_s * self.rate))
        out: dict[Any, float] = _MEASURE[self.kind](self, st, t_s, k)  # type: ignore[assignment]
        out["t_us"] = self.clock_us(t_s)
        return out

    def sample_named(self, t_s: float) -> dict[str, float]:
        """``sample`` keyed by the map's point names."""
        by_id = {p["id"]: p["name"] for p in self.map.get("points", ())}
        return {by_id[i]: v for i, v in self.sample(t_s).items() if isinstance(i, int) and i in by_id}

    # -- serving it ------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self, clock: Callable[[], float] | None = None, **kw: Any) -> Iterator[Endpoint]:
        """Serve the device the real way while the ``with`` block runs; yields its ``Endpoint``.

        ``clock()`` gives the simulation time now (default: seconds since
        this call). Keyword arguments go to the kind's server (``speed`` for
        a PMU, ``rtu=True`` for a meter or charger on a pty line).
        """
        if clock is None:
            start = time.monotonic()

            def clock() -> float:
                return time.monotonic() - start
        with _SERVE[self.kind](self, clock, **kw) as ep:
            yield ep

    # -- charger sessions ------------------------------------------------------------

    def _make_sessions(self, rnd: random.Random) -> list[tuple[float, float, float]]:
        given = self.params.get("sessions")
        if given is not None:
            return [(float(a), float(b), float(kw)) for a, b, kw in given]
        out = []
        max_kw = float(self.params.get("max_kw", 22.0))
        t = 2.0 + rnd.uniform(0.0, 3.0)
        while t < 24 * 3600:
            dur = rnd.uniform(40.0, 900.0)
            out.append((t, t + dur, max_kw * rnd.choice((0.5, 1.0, 1.0))))
            t += dur + rnd.uniform(5.0, 120.0)
        return out

    def charger_at(self, t_s: float) -> tuple[bool, float, float, float, int]:
        """(charging, kW now, this session's kWh, all sessions' kWh, sessions started) at ``t_s``."""
        total = 0.0
        done = 0
        for a, b, kw in self._sessions:
            if a > t_s:
                break
            done += 1
            if t_s < b:
                return True, kw, kw * (t_s - a) / 3600.0, total + kw * (t_s - a) / 3600.0, done
            total += kw * (b - a) / 3600.0
        return False, 0.0, 0.0, total, done


# -- measurement per kind (data in, values out) ------------------------------------------


def _pmu(d: SimDevice, st: GridState, t: float, k: int) -> dict[int, float]:
    g = d.grid.spec
    bus = st.buses[d.spec.bus]
    kv = g.bus(d.spec.bus).kv
    f0 = g.nominal_hz
    spoof = -360.0 * f0 * d.clock_error_us(t) * 1e-6  # the receiver's wrong time, in the angles
    line = d.params.get("line") or next((ln.name for ln in g.lines if d.spec.bus in (ln.a, ln.b)), None)
    p_mw = 0.0
    if line is not None:
        ln = next(x for x in g.lines if x.name == line)
        p_mw = st.lines[line].p_mw * (1 if ln.a == d.spec.bus else -1)
    v_ln = bus.v_pu * kv * 1e3 / SQRT3
    pf = 0.98
    i_a = abs(p_mw) * 1e6 / (3 * v_ln * pf) if v_ln > 0 else 0.0
    i_shift = -math.degrees(math.acos(pf)) + (0.0 if p_mw >= 0 else 180.0)
    n = d._n
    out = {signals.FREQ: st.freq_hz + 0.0005 * n(k, 1), signals.ROCOF: st.rocof_hz_s + 0.008 * n(k, 2)}
    for j, ph in enumerate("ABC"):
        off = (0.0, -120.0, 120.0)[j]
        va = bus.angle_deg + spoof + off + 0.05 * d._unb[j]
        vm = signals.BY_NAME["V%s.mag" % ph].id
        out[vm] = v_ln * (1 + 0.003 * d._unb[3 + j] + 0.00015 * n(k, 3 + j))
        out[vm + 1] = signals.wrap180(va + 0.005 * n(k, 6 + j))
        im = signals.BY_NAME["I%s.mag" % ph].id
        out[im] = max(0.0, i_a * (1 + 0.02 * d._unb[j] + 0.0006 * n(k, 9 + j)))
        out[im + 1] = signals.wrap180(va + i_shift + 0.03 * n(k, 12 + j))
    return out


def _relay(d: SimDevice, st: GridState, t: float, k: int) -> dict[int, float]:
    g = d.grid.spec
    f = st.feeders[d.params["feeder"]]
    fs = next(x for x in g.feeders if x.name == d.params["feeder"])
    kv = fs.kv or g.bus(fs.bus).kv
    v = f.v_pu * kv * 1e3 / SQRT3
    n = d._n
    return {1: 2.0 if f.closed else 1.0, 2: 1.0 if f.trip else 0.0,
            10: v * (1 + 0.002 * d._unb[0] + 0.0002 * n(k, 1)),
            11: v * (1 + 0.002 * d._unb[1] + 0.0002 * n(k, 2)),
            12: v * (1 + 0.002 * d._unb[2] + 0.0002 * n(k, 3)),
            20: f.i_a * (1 + 0.01 * d._unb[3] + 0.001 * n(k, 4)),
            21: f.i_a * (1 + 0.01 * d._unb[4] + 0.001 * n(k, 5)),
            22: f.i_a * (1 + 0.01 * d._unb[5] + 0.001 * n(k, 6)),
            30: st.freq_hz + 0.0005 * n(k, 7),
            31: f.p_mw * 1e6 * (1 + 0.001 * n(k, 8))}


E0_WH = 123_456_789_012.0  # a meter's import register at t=0: past 2**32, so 64 bits matter


def _meter(d: SimDevice, st: GridState, t: float, k: int) -> dict[int, float]:
    g = d.grid.spec
    load = d.params["load"]
    nominal = next(x.mw for x in g.loads if x.name == load)
    ls = st.loads[load]
    kw = float(d.params.get("kw", 6.6))
    share = kw * 1e3 / (nominal * 1e6)  # of the load this customer is
    p_w = ls.mw * 1e6 * share
    bus = st.buses[d.spec.bus]
    v = 230.0 * bus.v_pu
    pf = 0.95
    n = d._n
    e_import = float(d.params.get("e0_wh", E0_WH)) + ls.mwh * 1e6 * share
    e_export = 98_765.0 + 0.0  # a small rooftop export, fixed over a run
    out: dict[int, float] = {}
    p_ph = []
    for j in range(3):
        vj = v * (1 + 0.004 * d._unb[j] + 0.0005 * n(k, j))
        pj = p_w / 3 * (1 + 0.05 * d._unb[3 + j])
        p_ph.append(pj)
        out[1 + j] = vj
        out[4 + j] = pj / (vj * pf) if vj > 0 else 0.0
    out[7] = st.freq_hz
    out[8] = sum(p_ph)
    out[9] = sum(p_ph) * math.tan(math.acos(pf))
    out[10] = pf if p_w > 0 else 1.0
    out[11] = math.floor(e_import)
    out[12] = math.floor(e_export)
    out[13] = sum(p_ph) / pf
    for j in range(3):
        out[14 + j] = p_ph[j]
    out[17] = math.floor(e_import) - math.floor(e_export)
    out[18] = 35.0 + 0.5 * d._unb[6] + 0.1 * n(k, 9)
    out[19] = 1.0 if ls.served else 0.0
    return out


def _charger(d: SimDevice, st: GridState, t: float, k: int) -> dict[int, float]:
    charging, kw, s_kwh, total_kwh, started = d.charger_at(t)
    load = d.params.get("load")
    powered = st.loads[load].served if load else st.buses[d.spec.bus].energized
    if not powered:
        charging, kw = False, 0.0
    v = 230.0 * st.buses[d.spec.bus].v_pu * (1 + 0.004 * d._unb[0] + 0.0005 * d._n(k, 1))
    p_w = kw * 1e3
    return {1: 1.0 if charging else 0.0, 2: p_w, 3: v, 4: p_w / (3 * v) if v > 0 else 0.0,
            5: math.floor(s_kwh * 1e3), 6: math.floor(float(d.params.get("e0_wh", 4_321_000.0))
                                                  + total_kwh * 1e3),
            7: float(started), 8: st.freq_hz, 9: 30.0 + kw * 0.4 + 0.1 * d._n(k, 2),
            10: 1.0 if d.tampered(t) else 0.0}


def _scada(d: SimDevice, st: GridState, t: float, k: int) -> dict[int, float]:
    """What the tap sees: the polled meter's values (the tap map's points are the meter's)."""
    meter = d.params["_meter"]
    ids = {p["id"] for p in d.map["points"]}
    return {i: v for i, v in _meter(meter, st, t, k).items() if i in ids}


def _operator(d: SimDevice, st: GridState, t: float, k: int) -> dict[int, float]:
    return {}


_MEASURE: dict[str, Callable[[SimDevice, GridState, float, int], dict[int, float]]] = {
    "pmu": _pmu, "relay": _relay, "meter": _meter, "charger": _charger, "scada": _scada,
    "operator": _operator}


# -- serving per kind -----------------------------------------------------------------------


class _PmuSource:
    """Frames for ``PmuServer`` from a device: frame k is taken at true time k / rate."""

    def __init__(self, dev: SimDevice, clock: Callable[[], float]) -> None:
        self.dev = dev
        self.clock = clock

    def first_frame(self) -> int:
        return max(0, int(self.clock() * self.dev.rate))

    def frame(self, k: int) -> tuple[int, dict[Any, float]]:
        t = k / self.dev.rate
        values = self.dev.sample(t)
        return int(values["t_us"]), values


@contextlib.contextmanager
def _serve_pmu(d: SimDevice, clock: Callable[[], float], **kw: Any) -> Iterator[Endpoint]:
    from lightnode.simulator.pmu_server import PmuServer

    srv = PmuServer(idcode=int(d.params["idcode"]), rate=d.rate, t0_us=d.t0_us,
                    station=("LN " + d.name.upper())[:16], source=_PmuSource(d, clock), **kw)
    with srv:
        host, port = srv.address
        yield Endpoint("c37118", host, port, idcode=srv.idcode, map_path=d.map_path, server=srv)


MMS_KEYS = {10: "PhV.phsA.cVal.mag", 11: "PhV.phsB.cVal.mag", 12: "PhV.phsC.cVal.mag",
            20: "A.phsA.cVal.mag", 21: "A.phsB.cVal.mag", 22: "A.phsC.cVal.mag",
            30: "Hz.mag", 31: "TotW.mag"}


@contextlib.contextmanager
def _serve_relay(d: SimDevice, clock: Callable[[], float], **kw: Any) -> Iterator[Endpoint]:
    from lightnode.simulator.mms_server import MmsServer

    def source() -> dict[str, Any]:
        t = clock()
        v = d.sample(t)
        out: dict[str, Any] = {MMS_KEYS[i]: v[i] for i in MMS_KEYS}
        out["breaker_closed"] = v[1] == 2.0
        out["trip"] = v[2] == 1.0
        out["t_ms"] = d.clock_us(t) // 1000
        return out

    with MmsServer(source=source, **kw) as srv:
        yield Endpoint("mms", "127.0.0.1", srv.port, map_path=d.map_path, server=srv)


@contextlib.contextmanager
def _serve_modbus(d: SimDevice, clock: Callable[[], float], rtu: bool = False,
                  **kw: Any) -> Iterator[Endpoint]:
    from lightnode.simulator.modbus_server import MeterServer

    unit = int(d.params.get("unit", d.map["source"].get("unit", 1)))

    def source() -> dict[str, float]:
        return d.sample_named(clock())

    srv = MeterServer(d.map, unit=unit, source=source)
    with srv:
        if rtu:
            path = srv.start_rtu(**kw)
            yield Endpoint("modbus-rtu", path=path, unit=unit, map_path=d.map_path, server=srv)
        else:
            host, port = srv.start_tcp(**kw)
            yield Endpoint("modbus-tcp", host, port, unit=unit, map_path=d.map_path, server=srv)


@contextlib.contextmanager
def _serve_scada(d: SimDevice, clock: Callable[[], float], rounds: int = 1_000_000,
                 **kw: Any) -> Iterator[Endpoint]:
    """The meter on end 1 of a three-end RS-485 bus, SCADA polling from end 0, the tap on end 2."""
    from lightnode.simulator.modbus_server import MeterServer, PtyBus, ScadaPoller

    meter: SimDevice = d.params["_meter"]
    tap_map = d.map
    src = tap_map["source"]
    unit = int(meter.params.get("unit", src.get("unit", 1)))

    def source() -> dict[str, float]:
        return meter.sample_named(clock())

    bus = PtyBus(3, listen_only=(2,))
    srv = MeterServer(meter.map, unit=unit, source=source)
    try:
        srv.start_rtu(baud=int(src.get("baud", 9600)), parity=src.get("parity", "E"),
                      stop=int(src.get("stop", 1)), bus=bus, end=1)
        poller = ScadaPoller(bus.paths[0], _blocks(tap_map), unit=unit, baud=int(src.get("baud", 9600)),
                             period_s=float(d.params.get("period_s", 0.05)))
        poller.start(rounds=rounds)
        try:
            yield Endpoint("modbus-tap", path=bus.paths[2], unit=unit, map_path=d.map_path,
                           server=(srv, poller, bus))
        finally:
            poller.stop()
    finally:
        srv.stop()  # closes the bus too


def _blocks(pointmap: dict[str, Any]) -> list[tuple[str, int, int]]:
    """The register blocks a SCADA master polls for a map: one request per table, start to end."""
    from lightnode.drivers.modbus import registers

    spans: dict[str, tuple[int, int]] = {}
    for p in pointmap["points"]:
        r = p["read"]
        n = registers.count(r["type"]) if r["type"] != "bool" else 1
        a, b = spans.get(r["table"], (r["address"], r["address"] + n))
        spans[r["table"]] = (min(a, r["address"]), max(b, r["address"] + n))
        if "scale_register" in r:
            a, b = spans[r["table"]]
            spans[r["table"]] = (min(a, r["scale_register"]), max(b, r["scale_register"] + 1))
    return [(t, a, b - a) for t, (a, b) in sorted(spans.items())]


@contextlib.contextmanager
def _serve_none(d: SimDevice, clock: Callable[[], float], **kw: Any) -> Iterator[Endpoint]:
    yield Endpoint("none", server=d)


_SERVE: dict[str, Callable[..., Any]] = {
    "pmu": _serve_pmu, "relay": _serve_relay, "meter": _serve_modbus, "charger": _serve_modbus,
    "scada": _serve_scada, "operator": _serve_none}


# -- the operator console ----------------------------------------------------------------------


def operator_seed(scenario_seed: int, operator: str) -> bytes:
    """The operator's signing seed in a run (32 bytes, from the scenario's seed): the runner
    registers its public key; an attack with a stolen credential signs with the same seed."""
    return hashlib.sha256(b"lightnode-sim-operator/%d/%s" % (scenario_seed, operator.encode())).digest()


class OperatorConsole(SimDevice):
    """An operator's console: the scenario's ``operator_action`` events as signed operator actions.

    ``actions(t_from, t_to)`` lists the events due in ``[t_from, t_to)`` (the
    file's and a stolen credential's); ``sign(event, time_us)`` makes the kind-3
    wire transaction with the operator's key, keeping the operator's own
    sequence and previous-hash chain.
    """

    def __init__(self, spec: Any, grid: Grid, t0_us: int = signals.T0_US, seed: int = 1,
                 segment: str = "sim") -> None:
        super().__init__(spec, grid, t0_us, seed)
        self.operator: str = self.params["operator"]
        self.key_seed = operator_seed(seed, self.operator)
        self.segment = segment
        self.seq = 0
        self.prev = bytes(32)
        self._lock = threading.Lock()

    @property
    def public_key(self) -> bytes:
        from nacl.signing import SigningKey

        return bytes(SigningKey(self.key_seed).verify_key)

    def actions(self, t_from: float, t_to: float) -> list[Any]:
        return [e for e in self.grid.events if e.kind == "operator_action"
                and e.params.get("console") == self.name and t_from <= e.at_s < t_to]

    def sign(self, event: Any, time_us: int | None = None) -> bytes:
        """One signed operator action for ``event`` (an ``operator_action`` grid Event)."""
        from lightnode import registry

        p = event.params
        if time_us is None:
            time_us = self.clock_us(event.at_s)
            if "hour" in p:  # the stolen key is used at that hour of the day (UTC)
                day = time_us // 86_400_000_000 * 86_400_000_000
                time_us = day + int(p["hour"]) * 3_600_000_000 + time_us % 3_600_000_000
        action = {"login": "login", "emergency-shutdown": "emergency-shutdown",
                  "control": "control"}[p["action"]]
        target = p.get("breaker") or p.get("target") or self.segment
        args = {"open": bool(p.get("open", True))} if action == "control" else {}
        with self._lock:
            data = registry.operator_action(self.key_seed, self.operator, self.segment, self.seq,
                                            self.prev, int(time_us), action, target, args)
            self.seq += 1
            self.prev = hashlib.sha256(data).digest()  # a transaction's id (DESIGN.md, signer)
        return data


# -- a scenario's devices ----------------------------------------------------------------------


def make_devices(sc: Any, grid: Grid | None = None, t0_us: int = signals.T0_US,
                 segment: str = "sim") -> dict[str, SimDevice]:
    """Every device of scenario ``sc`` on ``grid`` (default ``sc.make_grid()``), by name,
    with the scenario's GPS attacks in the PMUs' clocks (at their ``at_s``; setting the same
    attack again when it fires, ``set_clock_error(offset, drift)`` at that time, gives the same
    clock) and tamper events in the switches."""
    grid = grid or sc.make_grid()
    out: dict[str, SimDevice] = {}
    for spec in sc.devices:
        if spec.kind == "operator":
            out[spec.name] = OperatorConsole(spec, grid, t0_us, sc.seed, segment)
            continue
        dev = SimDevice(spec, grid, t0_us, sc.seed)
        if spec.kind == "scada":
            dev.params["_meter"] = out[spec.params["meter"]]
        out[spec.name] = dev
    for a in sc.attacks:
        if a.kind in ("gps_step", "gps_drift"):
            target = sc.target_device(a)
            out[target.name].apply_attack(a.kind, a.at_s, a.params)
    for e in sc.events:
        if e.kind == "tamper":
            out[e.params["device"]].set_tamper(e.at_s, bool(e.params.get("on", True)))
    return out
