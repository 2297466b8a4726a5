"""Time-anomaly analysis of a segment: what the full node flags about clocks, angles and hours.

The node commits everything authentic (DESIGN.md, "Full node"); what looks
wrong about time becomes a flag on the committed entry, in the store's
flags table. ``Analyzer`` is fed every entry the node commits to the
segment chain (readings, heartbeats, events; decoded) and every operator
action it commits to the operator chain, and returns flags of four kinds:

``angle-drift`` (``FLAG_ANGLE_DRIFT``)
    One PMU's voltage angle moves against the other PMUs of the segment.
    A GPS-spoofed clock error dt shows as an angle offset of 360·f·dt
    (1 ms at 50 Hz is 18°; a drift of 50 µs/s is 0.9°/s). The PMUs'
    angles are taken at common instants (a 200 ms grid of their source
    timestamps); for each PMU d = its angle − the median of the others'.
    Real differences move with power flow, so a flag needs (a) a *step*:
    the mean of d over the last second differs from the mean over the
    second before by ``step_deg`` or more, or (b) a *drift*: the slope of d
    is ``drift_deg_s`` or more, with one sign, in each of two consecutive
    ``drift_window_us`` windows (a single step never does that); and in
    both cases that PMU's figure must be ``attribution`` times the largest
    figure of any other PMU (a spoofed PMU moves against all the others;
    a flow change moves several). With fewer than two other PMUs at an
    instant nothing can be attributed: no flag, counted as
    ``insufficient_neighbours``.
``time-step`` (``FLAG_TIME_STEP``)
    A device's per-sample source timestamps jump, forward or back, against
    the series period (samples the series says it missed, and whole
    missing periods, are not steps), within a transaction or from the
    device's previous transaction to this one, by more than
    ``max(time_step_us, time_step_jitter × the series' usual jitter)``.
``clock-bracket`` (``FLAG_CLOCK_BRACKET``)
    A transaction's device time outside the ledger's bracket: before the
    last cosigned checkpoint (or, while none is cosigned, the node's last
    checkpoint) less ``bracket_tolerance_us`` — unless the device is
    catching up a backlog (its transactions arrive faster than its clock
    advances: a journal emptying after an outage, not a wrong clock) — or
    after the checkpoint of the block that commits it plus the tolerance.
``operator-odd-hour`` (``FLAG_OPERATOR_ODD_HOUR``)
    An operator action signed at a time of day outside that operator's
    hours (``operator_hours``, default 06:00-22:00, local to the segment's
    ``timezone``). A forged day-time stamp on a night-time action is the
    clock-bracket check's to catch.

A flag's ``time`` is the node's clock when it was raised (so a detection
delay is node time minus attack time); the source time it concerns is in
its detail, with the measured figure and the threshold. Flags of one kind
on one device are raised at most once per ``flag_every_us`` (the next says
how many were held back), so a device that stays wrong costs one row a
minute, not one per transaction.

The analyzer never raises on what a device sent: a body it cannot read is
counted (``stats["bad_bodies"]``) and skipped. Its memory is per device
(a few numbers, two short windows) and a bounded grid of recent instants.

    analyzer = Analyzer("feeder-7", pmu_points=PointRoles(registry))
    flags = analyzer.observe(tx, index, received_us, now_us)   # after Ledger.add_transaction
    flags += analyzer.on_checkpoint(chain, size, time_us, now_us)
    flags += analyzer.operator_action("alice", tx, index, received_us, now_us)
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple

from lightnode.firmware.ln import wire as spec
from lightnode.ledger import checkpoint as cp
from lightnode.ledger.store import (
    FLAG_ANGLE_DRIFT,
    FLAG_CLOCK_BRACKET,
    FLAG_OPERATOR_ODD_HOUR,
    FLAG_TIME_STEP,
    Flag,
)

__all__ = [
    "AnalysisConfig",
    "Analyzer",
    "PmuPoints",
    "PointRoles",
    "parse_hours",
]

log = logging.getLogger("lightnode.node")

OPERATOR_CHAIN = "operator"
DEFAULT_HOURS = (6 * 60, 22 * 60)  # minutes of the day: 06:00 to 22:00
_BAD_SAMPLE = spec.Q_INVALID | spec.Q_TIME_UNLOCKED  # samples whose angle or time the PMU disowns
_NO_BOUND = 1 << 63  # an uncertainty this large says "unknown" (the wire's 2**64 - 1)
_SAME_INSTANT_US = 100_000  # transactions closer than this in device time: one instant


@dataclass

class AnalysisConfig:
    """Thresholds of the analysis (docs/time.md, "What the full node flags", gives the reasons)."""

    grid_us: int = 200_000  # PMU angles are compared at this grid of source time
    hold_margin_us: int = 3_000_000  # an instant is judged this long after the slowest window
    step_deg: float = 8.0  # 1 ms at 50 Hz is 18 deg
    step_slots: int = 5  # the means compared for a step: 5 grid instants (1 s) each side
    drift_deg_s: float = 0.3  # 50 us/s at 50 Hz is 0.9 deg/s
    drift_window_us: int = 8_000_000  # two consecutive windows must both show the drift
    attribution: float = 1.5  # the flagged PMU's figure against the largest of the others'
    nominal_hz: float = 50.0
    time_step_us: int = 500
    time_step_jitter: float = 8.0
    bracket_tolerance_us: int = 5_000_000
    timezone: str = "UTC"
    operator_hours: tuple[int, int] = DEFAULT_HOURS
    operator_windows: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    flag_every_us: int = 60_000_000
    max_devices: int = 100_000
    max_slots: int = 4096  # grid instants waiting to be judged, all PMUs together


def parse_hours(text: str) -> tuple[int, int]:
    """``"06:00-22:00"`` as minutes of the day ``(360, 1320)``; a window may wrap midnight."""
    try:
        a, b = text.strip().split("-")
        out = []
        for part in (a, b):
            h, m = part.strip().split(":")
            hh, mm = int(h), int(m)
            if not (0 <= hh <= 24 and 0 <= mm < 60 and hh * 60 + mm <= 1440):
                raise ValueError
            out.append(hh * 60 + mm)
    except ValueError:
        raise ValueError("hours %r: HH:MM-HH:MM" % text) from None
    return out[0], out[1]


def _in_window(minute: int, window: tuple[int, int]) -> bool:
    lo, hi = window
    if lo <= hi:
        return lo <= minute < hi
    return minute >= lo or minute < hi  # a night shift: 22:00-06:00


def _wrap(x: float) -> float:
    """An angle difference in degrees, into [-180, 180)."""
    return (x + 180.0) % 360.0 - 180.0


def _fmt_us(t: int) -> str:
    try:
        return _dt.datetime.fromtimestamp(t / 1e6, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return "%d us" % t


class PmuPoints(NamedTuple):
    """Which of a PMU's points carry the angle compared (a voltage angle, 0.01 deg) and its frequency."""

    angle: int
    frequency: int | None = None
    resolution: float = 0.01  # degrees per integer step


# The shipped PMU map's points (drivers/maps/pmu_c37118.json): VA.ang, FREQ.
SHIPPED_PMU = PmuPoints(4, 1)


class PointRoles:
    """Finds a device's angle point: from its registered point map digest, else by the shipped map's convention.

    ``maps`` are point map files (JSON) the node knows (default: the shipped
    ``drivers/maps``); a PMU map's positive-sequence voltage angle is used if
    it has one (a point named ``V1.ang``, ``VP.ang`` or ``V+.ang``), else its
    phase-A voltage angle. A device whose registered digest is not one of
    them is taken as a PMU of the shipped map's layout only if its series
    looks like one: point ``SHIPPED_PMU.angle`` differenced twice (how angles
    travel), at 10 or more samples a second; ``fallback=None`` turns that off.
    """

    def __init__(
        self,
        registry: Any = None,
        maps: Iterable[Path | str] | None = None,
        fallback: PmuPoints | None = SHIPPED_PMU,
    ) -> None:
        self.registry = registry
        self.fallback = fallback
        self.by_digest: dict[str, PmuPoints | None] = {}
        if maps is None:
            import lightnode.drivers

            maps = sorted((Path(lightnode.drivers.__file__).parent / "maps").glob("*.json"))
        for p in maps:
            self.add_map(Path(p))
        self._cache: dict[bytes, PmuPoints | None | bool] = {}

    def add_map(self, path: Path) -> None:
        from lightnode.drivers import pointmap

        try:
            pm = pointmap.load(path.read_bytes())
        except Exception as e:  # a map the node cannot read identifies nobody
            log.warning("point map %s: %s", path, e)
            return
        self.by_digest[pm.digest()] = _pmu_points(pm)

    def __call__(self, device: bytes, series: Mapping[Any, Any]) -> PmuPoints | None:
        known = self._cache.get(device)
        if known is None and device not in self._cache:
            known = self._lookup(device)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[device] = known
        if known is not False:
            return known  # type: ignore[return-value]
        fb = self.fallback
        if fb is None:
            return None
        period = series.get(spec.S_PERIOD)
        if type(period) is not int or not 0 < period <= 100_000:
            return None
        for p in series.get(spec.S_POINTS) or ():
            if isinstance(p, list) and len(p) >= 3 and p[0] == fb.angle:
                return fb if p[1] == 2 else None
        return None

    def _lookup(self, device: bytes) -> PmuPoints | None | bool:
        """The device's roles from its map; False when the map is not one the node knows."""
        if self.registry is None:
            return False
        try:
            dev = self.registry.device(device)
        except Exception:  # a registry in trouble: no roles, no crash
            return False
        digest = getattr(dev, "pointmap_digest", None)
        if digest in self.by_digest:
            return self.by_digest[digest]
        return False


def _pmu_points(pm: Any) -> PmuPoints | None:
    if getattr(pm, "kind", None) not in (None, "pmu"):
        return None
    angles, freq = [], None
    for rec in pm.records:
        p = pm.point(rec[0])
        if p.quantity == "frequency" and freq is None:
            freq = p.id
        if p.quantity == "angle" and p.name.upper().startswith("V"):
            angles.append(p)
    if not angles:
        return None
    pos = [p for p in angles if p.name.upper() in ("V1.ANG", "VP.ANG", "V+.ANG")]
    best = (pos or angles)[0]
    return PmuPoints(best.id, freq, best.resolution)


# -- per-device state ----------------------------------------------------------------------


@dataclass
class _SeriesTrack:
    seq: int
    last_t: int
    jitter: float = 0.0


@dataclass
class _Device:
    series: dict[tuple[int, int], _SeriesTrack] = field(default_factory=dict)
    # the clock bracket: the device's last transaction (device time, arrival), a held suspicion
    last_time: int | None = None
    last_received: int | None = None
    suspect: Flag | None = None
    suspect_at: int = 0
    pending_upper: list[tuple[int, int, int, int, str]] = field(default_factory=list)


@dataclass
class _AngleTrack:
    """One PMU's difference against the median of the others, at grid instants."""

    last_slot: int = -1
    last_d: float = 0.0  # unwrapped
    recent: deque[float] = field(default_factory=deque)
    win: int = -1  # drift window number
    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0
    slopes: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=2))
    step_muted_to: int = -1
    latest_slot: int = -1  # the newest instant this PMU has sent
    span_us: int = 0  # how long its transactions' windows are
    index: int | None = None
    seq: int | None = None


class _Bad(Exception):
    pass


class Analyzer:
    """Time-anomaly flags for one segment (see the module docstring)."""

    def __init__(
        self,
        segment: str,
        config: AnalysisConfig | None = None,
        pmu_points: Callable[[bytes, Mapping[Any, Any]], PmuPoints | None] | None = None,
    ) -> None:
        self.segment = segment
        self.chain = cp.SEGMENT_PREFIX + segment
        self.config = c = config or AnalysisConfig()
        self.pmu_points = pmu_points or PointRoles(None)
        self._devices: dict[bytes, _Device] = {}
        self._tracks: dict[bytes, _AngleTrack] = {}
        self._slots: dict[int, dict[bytes, tuple[float, int, int]]] = {}
        self._done = -1  # instants up to this one are judged
        self._first: int | None = None  # the first instant seen
        self._advanced = -(1 << 62)  # node time of the last judging
        self._suspects: set[bytes] = set()  # devices with a clock-bracket suspicion held
        self._upper: set[bytes] = set()  # devices with a time after arrival, judged at the cut
        self._last_flag: dict[tuple[bytes, str], tuple[int, int]] = {}
        self.lower_ref: int | None = None  # the bracket's lower checkpoint time (us)
        self._tz: Any = None
        try:
            from zoneinfo import ZoneInfo

            self._tz = ZoneInfo(c.timezone)
        except Exception as e:
            raise ValueError("timezone %r: %s" % (c.timezone, e)) from e
        self.stats: dict[str, Any] = {
            "entries": 0,
            "pmu_transactions": 0,
            "bad_bodies": 0,
            "instants": 0,
            "insufficient_neighbours": 0,
            "late_samples": 0,
            "backlog_excused": 0,
            "operator_actions": 0,
            "flags": {},
            "suppressed": 0,
        }

    # -- entry points ------------------------------------------------------------------------

    def observe(self, tx: Any, index: int, received: int, now: int) -> list[Flag]:
        """A transaction just committed to the segment chain at ``index``; the flags it raises."""
        out: list[Flag] = []
        self.stats["entries"] += 1
        try:
            dev = self._device(tx.device_id)
            if dev is None:
                return out
            self._bracket(dev, tx, index, received, now, self.chain, out)
            if tx.kind == spec.KIND_READINGS:
                body = tx.body
                if not isinstance(body, list):
                    raise _Bad("body")
                for k, series in enumerate(body):
                    if not isinstance(series, dict):
                        raise _Bad("series")
                    self._series(dev, tx, index, k, series, now, out)
        except Exception as e:  # a body the analysis cannot read: counted, never raised
            self.stats["bad_bodies"] += 1
            log.debug("analysis: %s seq %s: %r", tx.device_id.hex(), tx.seq, e)
        return out

    def on_checkpoint(self, chain: str, size: int, time_us: int, now: int) -> list[Flag]:
        """A block of ``chain`` was cut up to ``size`` at checkpoint time ``time_us``: the upper bracket."""
        out: list[Flag] = []
        tol = self.config.bracket_tolerance_us
        for device in list(self._upper):
            dev = self._devices.get(device)
            if dev is None or not dev.pending_upper:
                self._upper.discard(device)
                continue
            keep = []
            for idx, seq, t, unc, ch in dev.pending_upper:
                if ch != chain:
                    keep.append((idx, seq, t, unc, ch))
                elif idx >= size:
                    keep.append((idx, seq, t, unc, ch))
                elif t > time_us + tol + unc:
                    self._flag(
                        out,
                        FLAG_CLOCK_BRACKET,
                        ch,
                        now,
                        "device time %s is %.3f s after the checkpoint that commits it (%s); "
                        "tolerance %.3f s" % (_fmt_us(t), (t - time_us) / 1e6, _fmt_us(time_us),
                                              (tol + unc) / 1e6),
                        idx,
                        device,
                        seq,
                    )
            dev.pending_upper = keep
            if not keep:
                self._upper.discard(device)
        return out

    def set_lower_reference(self, time_us: int | None) -> None:
        """The bracket's lower checkpoint: the last cosigned one's time (or the node's last)."""
        if time_us is not None and (self.lower_ref is None or time_us > self.lower_ref):
            self.lower_ref = time_us

    def tick(self, now: int) -> list[Flag]:
        """Suspicions about a device's clock that no later transaction explained: confirmed."""
        out: list[Flag] = []
        if self._slots and now - self._advanced >= 100_000:
            self._advance(now, out)
        wait = max(30_000_000, 3 * self.config.bracket_tolerance_us)
        for device in list(self._suspects):
            dev = self._devices.get(device)
            s = dev.suspect if dev is not None else None
            if dev is None or s is None:
                self._suspects.discard(device)
            elif now - dev.suspect_at >= wait:
                dev.suspect = None
                self._suspects.discard(device)
                self._raise(out, s, now)
        return out

    def operator_action(
        self, operator: str, tx: Any, index: int, received: int, now: int
    ) -> list[Flag]:
        """An operator action committed to the operator chain at ``index``: odd hour, clock bracket."""
        out: list[Flag] = []
        self.stats["operator_actions"] += 1
        try:
            c = self.config
            window = c.operator_windows.get(operator, c.operator_hours)
            t = tx.time.us
            local = _dt.datetime.fromtimestamp(t / 1e6, self._tz)
            minute = local.hour * 60 + local.minute
            body = tx.body if isinstance(tx.body, dict) else {}
            if not _in_window(minute, window):
                self._flag(
                    out,
                    FLAG_OPERATOR_ODD_HOUR,
                    OPERATOR_CHAIN,
                    now,
                    "%s: %r on %r at %s %s, outside %02d:%02d-%02d:%02d"
                    % (operator, body.get(0), _target(body.get(1)), local.strftime("%H:%M"),
                       c.timezone, window[0] // 60, window[0] % 60, window[1] // 60,
                       window[1] % 60),
                    index,
                    tx.device_id,
                    tx.seq,
                )
            dev = self._device(tx.device_id)
            if dev is not None:
                self._bracket(dev, tx, index, received, now, OPERATOR_CHAIN, out, backlog=False)
        except Exception as e:  # never the analysis's trouble to stop the node
            self.stats["bad_bodies"] += 1
            log.debug("analysis: operator action: %r", e)
        return out

    # -- the clock bracket ---------------------------------------------------------------------

    def _bracket(
        self,
        dev: _Device,
        tx: Any,
        index: int,
        received: int,
        now: int,
        chain: str,
        out: list[Flag],
        backlog: bool = True,
    ) -> None:
        c = self.config
        t = tx.time.us
        unc = tx.time.uncertainty if tx.time.uncertainty < _NO_BOUND else 0
        unc = min(unc, 3600_000_000)
        tol = c.bracket_tolerance_us + unc
        prev_t, prev_r = dev.last_time, dev.last_received
        dev.last_time, dev.last_received = t, received
        # a held suspicion is explained when the device catches up: its clock ran ahead of arrivals
        catching_up = (
            prev_t is not None
            and prev_r is not None
            and t > prev_t
            and (t - prev_t) - (received - prev_r) >= (t - prev_t) // 2
        )
        # two transactions of one instant (a window and its heartbeat) say nothing of a trend:
        # a held suspicion waits for a transaction of a later instant
        same_instant = prev_t is not None and abs(t - prev_t) < _SAME_INSTANT_US
        if dev.suspect is not None and not same_instant:
            s, dev.suspect = dev.suspect, None
            if catching_up:
                self.stats["backlog_excused"] += 1
            else:
                self._raise(out, s, now)
        if t > received + tol:  # after arrival: maybe after its checkpoint; judged at the cut
            if len(dev.pending_upper) < 64:
                dev.pending_upper.append((index, tx.seq, t, unc, chain))
                self._upper.add(tx.device_id)
        low = self.lower_ref
        if low is not None and t < low - tol:
            detail = (
                "device time %s is %.3f s before the last cosigned checkpoint (%s); "
                "tolerance %.3f s; received %s"
                % (_fmt_us(t), (low - t) / 1e6, _fmt_us(low), tol / 1e6, _fmt_us(received))
            )
            f = Flag(FLAG_CLOCK_BRACKET, chain, now, detail, index, tx.device_id, tx.seq)
            if not backlog:
                self._raise(out, f, now)
            elif catching_up:
                self.stats["backlog_excused"] += 1
            elif dev.suspect is None:
                dev.suspect, dev.suspect_at = f, now  # a backlog's first, or a clock behind: wait
                self._suspects.add(tx.device_id)

    # -- timestamps and angles -----------------------------------------------------------------

    def _series(
        self, dev: _Device, tx: Any, index: int, k: int, m: dict[Any, Any], now: int,
        out: list[Flag],
    ) -> None:
        t0, period, dt = m[spec.S_T0], m[spec.S_PERIOD], m[spec.S_DT]
        if type(t0) is not int or type(period) is not int or not isinstance(dt, list) or period < 0:
            raise _Bad("t0, period, dt")
        n = len(dt) + 1
        gaps: dict[int, int] = {}
        if spec.S_GAPS in m:
            for g in m[spec.S_GAPS]:
                gaps[int(g[0])] = int(g[1])
        irregular = any(dt)
        cum = list(accumulate(dt, initial=0)) if irregular else None
        t_last = t0 + (n - 1) * period + (cum[-1] if cum is not None else 0)
        self._time_steps(dev, tx, index, k, t0, period, dt, n, gaps, t_last, now, out)
        roles = self.pmu_points(tx.device_id, m)
        if roles is None or period <= 0:
            return
        self.stats["pmu_transactions"] += 1
        values = None
        for p in m[spec.S_POINTS]:
            if p[0] == roles.angle:
                values = p
                break
        if values is None:
            return
        agg = m.get(spec.S_AGG)
        col = values[4] if agg is not None else values[2]
        order = values[1]
        if not isinstance(col, list) or len(col) != n or type(order) is not int:
            raise _Bad("angle values")
        ang: list[int] = col
        for _ in range(order):
            ang = list(accumulate(ang))
        bad = _bad_samples(m.get(spec.S_QUALITY), n)
        pq = values[5 if agg is not None else 3] if len(values) > (5 if agg is not None else 3) else None
        if pq is not None:
            bad2 = _bad_samples(pq, n)
            if bad2 is not None:
                bad = bad2 if bad is None else [a or b for a, b in zip(bad, bad2, strict=True)]
        self._angles(tx, index, t0, period, cum, ang, bad, roles.resolution, t_last, now, out)

    def _time_steps(
        self, dev: _Device, tx: Any, index: int, k: int, t0: int, period: int, dt: list[int],
        n: int, gaps: dict[int, int], t_last: int, now: int, out: list[Flag],
    ) -> None:
        c = self.config
        key = (k, period)
        st = dev.series.get(key)
        if st is None:
            if len(dev.series) >= 8:
                dev.series.clear()
            st = dev.series[key] = _SeriesTrack(tx.seq, t_last)
            prev_t = None
        else:
            prev_t = st.last_t if tx.seq == st.seq + 1 else None
            if tx.seq > st.seq:
                st.seq, st.last_t = tx.seq, t_last
        if period <= 0:
            return
        here = 0.0
        if any(dt):
            mags = sorted(abs(d) for d in dt)
            here = float(mags[len(mags) // 2])
        thr = max(float(c.time_step_us), c.time_step_jitter * max(st.jitter, here))
        steps: list[tuple[int, int]] = []  # (sample index, step us)
        if prev_t is not None:
            s = _step(t0 - prev_t - period - gaps.get(0, 0) * period, period)
            if abs(s) > thr:
                steps.append((0, s))
        if here or any(dt):
            for i, d in enumerate(dt, 1):
                if d:
                    s = _step(d - gaps.get(i, 0) * period, period)
                    if abs(s) > thr:
                        steps.append((i, s))
        # the usual jitter: steps left out, so one step does not raise the bar for the next
        st.jitter = 0.9 * st.jitter + 0.1 * min(here, thr / c.time_step_jitter)
        if steps:
            i, s = max(steps, key=lambda x: abs(x[1]))
            self._flag(
                out,
                FLAG_TIME_STEP,
                self.chain,
                now,
                "source timestamps step %+d us at sample %d of series %d (period %d us, "
                "%d step(s) in this transaction); threshold %d us; source time %s"
                % (s, i, k, period, len(steps), int(thr), _fmt_us(t0 + i * period)),
                index,
                tx.device_id,
                tx.seq,
            )

    def _angles(
        self, tx: Any, index: int, t0: int, period: int, cum: list[int] | None, ang: list[int],
        bad: list[bool] | None, resolution: float, t_last: int, now: int, out: list[Flag],
    ) -> None:
        c = self.config
        grid = c.grid_us
        half = period // 2
        device = tx.device_id
        tr = self._tracks.get(device)
        if tr is None:
            if len(self._tracks) >= 4096:
                self._forget_tracks()
            tr = self._tracks[device] = _AngleTrack()
        tr.span_us = max(tr.span_us, min(t_last - t0 + period, 120_000_000))
        tr.index, tr.seq = index, tx.seq
        slots = self._slots
        done = self._done
        n = len(ang)
        if cum is None and grid % period == 0:
            # a regular series: the samples on the grid are every g-th from the first one there
            g = grid // period
            first = self._scan(t0, period, None, min(g, n), grid, half)
            idxs: Iterable[int] = range(first[0], n, g) if first else ()
        else:
            idxs = self._scan(t0, period, cum, n, grid, half)
        latest = tr.latest_slot
        for i in idxs:
            if bad is not None and bad[i]:
                continue
            t = t0 + i * period + (cum[i] if cum is not None else 0)
            s = (t + half) // grid
            if abs(t - s * grid) > half:
                continue
            if s <= done:
                self.stats["late_samples"] += 1
                continue
            row = slots.get(s)
            if row is None:
                if len(slots) >= c.max_slots:
                    self._judge_upto(min(slots), now, out)
                    if s <= self._done:
                        continue
                row = slots[s] = {}
            row[device] = (ang[i] * resolution, index, tx.seq)
            if self._first is None or s < self._first:
                self._first = s
            if s > latest:
                latest = s
        tr.latest_slot = latest
        if now - self._advanced >= 100_000:  # judging is per instant, not per transaction
            self._advance(now, out)

    @staticmethod
    def _scan(t0: int, period: int, cum: list[int] | None, n: int, grid: int, half: int) -> list[int]:
        out = []
        for i in range(n):
            t = t0 + i * period + (cum[i] if cum is not None else 0)
            if abs(t - ((t + half) // grid) * grid) <= half:
                out.append(i)
        return out

    def _advance(self, now: int, out: list[Flag]) -> None:
        """Judge the instants every PMU that matters has sent by now (the median PMU, less a hold)."""
        self._advanced = now
        tracks = [t for t in self._tracks.values() if t.latest_slot >= 0]
        if not tracks:
            return
        lat = sorted(t.latest_slot for t in tracks)
        median = lat[len(lat) // 2]
        c = self.config
        span = max(t.span_us for t in tracks)
        hold = (span + c.hold_margin_us) // c.grid_us + 1
        if self._first is None or median - hold < self._first:
            return  # at start, every PMU gets a hold's time to be heard from
        # as soon as every PMU still sending has sent an instant; a silent one holds it no longer
        # than the hold, and one far ahead (a clock off by hours) moves neither the median nor this
        self._judge_upto(min(x for x in lat if x >= median - hold), now, out)

    def _judge_upto(self, upto: int, now: int, out: list[Flag]) -> None:
        if upto <= self._done:
            return
        slots = self._slots
        if upto - self._done <= 4 * len(slots) + 64:
            todo: Iterable[int] = (s for s in range(self._done + 1, upto + 1) if s in slots)
        else:
            todo = sorted(s for s in slots if s <= upto)
        for s in list(todo):
            self._judge(s, slots.pop(s), now, out)
        self._done = upto

    def _judge(
        self, s: int, row: dict[bytes, tuple[float, int, int]], now: int, out: list[Flag]
    ) -> None:
        c = self.config
        self.stats["instants"] += 1
        n = len(row)
        if n < 3:
            self.stats["insufficient_neighbours"] += n
            return
        devs = list(row)
        # each angle against the instant's median angle: differences between two PMUs at one
        # instant are the same whatever the reference, and this one keeps them small to unwrap
        ref = row[devs[0]][0]
        rel = [_wrap(row[d][0] - ref) for d in devs]
        mid = sorted(rel)
        centre = mid[n // 2] if n % 2 else (mid[n // 2 - 1] + mid[n // 2]) / 2.0
        win = (s * c.grid_us) // c.drift_window_us
        closes = ((s + 1) * c.grid_us) // c.drift_window_us != win
        x = (s * c.grid_us % c.drift_window_us) / 1e6
        k = c.step_slots
        moves: dict[bytes, float] = {}  # the step figure: mean of the last k less the k before
        slopes: dict[bytes, float] = {}
        for j, d in enumerate(devs):
            tr = self._tracks.get(d)
            if tr is None:
                continue
            e = _wrap(rel[j] - centre)
            if tr.last_slot >= 0 and s - tr.last_slot <= 4 * k:
                e = tr.last_d + _wrap(e - tr.last_d)  # unwrapped: a drift goes past 180
            else:
                tr.recent.clear()
            tr.last_slot, tr.last_d = s, e
            rec = tr.recent
            rec.append(e)
            if len(rec) > 2 * k:
                rec.popleft()
            if len(rec) == 2 * k:
                moves[d] = (sum(rec[i] for i in range(k, 2 * k)) - sum(rec[i] for i in range(k))) / k
            if tr.win != win:
                tr.win, tr.n, tr.sx, tr.sy, tr.sxx, tr.sxy = win, 0, 0.0, 0.0, 0.0, 0.0
            tr.n += 1
            tr.sx += x
            tr.sy += e
            tr.sxx += x * x
            tr.sxy += x * e
            if closes:
                den = tr.n * tr.sxx - tr.sx * tr.sx
                if tr.n >= 0.6 * c.drift_window_us / c.grid_us and den > 0:
                    slopes[d] = (tr.n * tr.sxy - tr.sx * tr.sy) / den
        t_us = s * c.grid_us
        hz = c.nominal_hz
        # a PMU's figure against the others': the median over the others of how the angle
        # between it and each of them moved (a PMU that moved alone moves against every other)
        steps = _against_others(moves)
        who = _attribute(steps, c.step_deg, c.attribution)
        if who is not None and self._tracks[who].step_muted_to < s:
            v = steps[who]
            # judged: the same step stays in the window for 2k instants, and is not told again
            self._tracks[who].step_muted_to = s + 2 * k
            _, idx, seq = row[who]
            self._flag(
                out,
                FLAG_ANGLE_DRIFT,
                self.chain,
                now,
                "angle step %+.2f deg against %d other PMUs (as a clock step: %+.0f us at %g Hz); "
                "threshold %.2f deg, next largest %.2f deg; source time %s"
                % (v, n - 1, -v / (360.0 * hz) * 1e6, hz, c.step_deg, _second(steps, who),
                   _fmt_us(t_us)),
                idx,
                who,
                seq,
            )
        if not closes:
            return
        drifts: dict[bytes, float] = {}
        for d, v in _against_others(slopes).items():
            sl = self._tracks[d].slopes
            if sl and sl[-1][0] != win - 1:
                sl.clear()
            sl.append((win, v))
            if len(sl) == 2 and (sl[0][1] > 0) == (sl[1][1] > 0):
                drifts[d] = min(sl[0][1], sl[1][1], key=abs)  # sustained: the smaller of the two
            else:
                drifts[d] = 0.0
        who = _attribute(drifts, c.drift_deg_s, c.attribution)
        if who is not None:
            v = drifts[who]
            _, idx, seq = row[who]
            self._flag(
                out,
                FLAG_ANGLE_DRIFT,
                self.chain,
                now,
                "angle drift %+.3f deg/s against %d other PMUs over two %g s windows (as a "
                "clock drift: %+.1f us/s at %g Hz); threshold %.3f deg/s, next largest "
                "%.3f deg/s; source time %s"
                % (v, n - 1, c.drift_window_us / 1e6, -v / (360.0 * hz) * 1e6, hz,
                   c.drift_deg_s, _second(drifts, who), _fmt_us(t_us)),
                idx,
                who,
                seq,
            )

    # -- bookkeeping ---------------------------------------------------------------------------

    def _device(self, device: bytes) -> _Device | None:
        dev = self._devices.get(device)
        if dev is None:
            if len(self._devices) >= self.config.max_devices:
                return None
            dev = self._devices[device] = _Device()
        return dev

    def _forget_tracks(self) -> None:
        """Drop the PMUs that sent nothing for longest (bounded memory)."""
        keep = sorted(self._tracks.items(), key=lambda kv: kv[1].latest_slot)[len(self._tracks) // 2 :]
        self._tracks = dict(keep)

    def _flag(
        self, out: list[Flag], kind: str, chain: str, now: int, detail: str, index: int | None,
        device: bytes, seq: int | None,
    ) -> None:
        self._raise(out, Flag(kind, chain, now, detail, index, device, seq), now)

    def _raise(self, out: list[Flag], f: Flag, now: int) -> None:
        key = (f.device or b"", f.kind)
        last = self._last_flag.get(key)
        if last is not None and now - last[0] < self.config.flag_every_us:
            self._last_flag[key] = (last[0], last[1] + 1)
            self.stats["suppressed"] += 1
            return
        if len(self._last_flag) > 100_000:
            self._last_flag.clear()
        held = last[1] if last is not None else 0
        self._last_flag[key] = (now, 0)
        if held:
            f = Flag(f.kind, f.chain, f.time, f.detail + " (+%d held back since the last)" % held,
                     f.index, f.device, f.seq)
        flags = self.stats["flags"]
        flags[f.kind] = flags.get(f.kind, 0) + 1
        out.append(f)


def _step(excess: int, period: int) -> int:
    """A timestamp's excess over the period, less whole missed periods (forward only)."""
    if excess > period // 2:
        return excess - ((excess + period // 2) // period) * period
    return excess


def _bad_samples(runs: Any, n: int) -> list[bool] | None:
    if not isinstance(runs, list):
        return None
    if all(isinstance(r, list) and len(r) == 2 and not (r[1] & _BAD_SAMPLE) for r in runs):
        return None
    out: list[bool] = []
    for cnt, q in runs:
        out.extend([bool(q & _BAD_SAMPLE)] * cnt)
    if len(out) != n:
        raise _Bad("quality runs")
    return out


def _attribute(scores: Mapping[bytes, float], threshold: float, ratio: float) -> bytes | None:
    """The one device whose figure passes the threshold and stands out from every other's."""
    if len(scores) < 3:
        return None
    best = max(scores, key=lambda d: abs(scores[d]))
    v = abs(scores[best])
    if v < threshold:
        return None
    if v < ratio * _second(scores, best):
        return None
    return best


def _against_others(values: Mapping[bytes, float]) -> dict[bytes, float]:
    """Each value less the median of the others' (leave-one-out medians, one sort)."""
    n = len(values)
    if n < 3:
        return {}
    devs = list(values)
    order = sorted(range(n), key=lambda i: values[devs[i]])
    srt = [values[devs[i]] for i in order]
    m = n - 1
    out = {}
    for r, i in enumerate(order):

        def other(q: int, r: int = r) -> float:
            return srt[q] if q < r else srt[q + 1]

        med = other(m // 2) if m % 2 else (other(m // 2 - 1) + other(m // 2)) / 2.0
        out[devs[i]] = values[devs[i]] - med
    return out


def _second(scores: Mapping[bytes, float], best: bytes) -> float:
    return max((abs(v) for d, v in scores.items() if d != best), default=0.0)


def _target(t: Any) -> str:
    return t.hex() if isinstance(t, bytes) else str(t)
