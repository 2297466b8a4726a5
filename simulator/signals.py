"""Signal models: a PMU's point list and a realistic window of its frames.

The point list is data (id, name, unit, resolution, delta order), the same
map the device's batcher uses to turn readings into integers. A window is
one batching window of a 50 frames/s PMU on a 132 kV bay: grid frequency
wandering around 50 Hz, phase angles turning with the frequency deviation,
magnitudes with measurement noise; every value both as the float the PMU
measured and as the integer at the point's fixed resolution.

    >>> from lightnode.simulator import signals
    >>> w = signals.pmu_window(seconds=5, rate=50, seed=1)
    >>> len(w.times), w.values[signals.FREQ][0]      # 1 mHz steps
    (250, 50025)
    >>> series = w.series()                           # a lightnode.readings.Series
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from lightnode import readings
from lightnode.firmware.ln import wire

NOMINAL_HZ = 50.0
V_NOMINAL = 132_000.0 / math.sqrt(3.0)  # V, phase to neutral, of a 132 kV bay
I_NOMINAL = 1_000.0  # A, CT primary rating
T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, on a second


@dataclass(frozen=True)
class PointSpec:
    """One point of a device's point map: integer value = round(measured / resolution)."""

    id: int
    name: str
    unit: str
    resolution: float  # in ``unit`` per integer step
    order: int  # delta order on the wire
    quantity: str  # "frequency", "rocof", "magnitude", "angle"
    nominal: float | None = None  # for magnitudes: resolution = 1e-4 of this


def _phasor(pid: int, name: str, unit: str, nominal: float) -> tuple[PointSpec, PointSpec]:
    return (
        PointSpec(pid, name + ".mag", unit, nominal * 1e-4, 1, "magnitude", nominal),
        PointSpec(pid + 1, name + ".ang", "deg", 0.01, 2, "angle"),
    )


FREQ = 1
ROCOF = 2
PHASORS = ("VA", "VB", "VC", "IA", "IB", "IC")
POINTS: tuple[PointSpec, ...] = (
    PointSpec(FREQ, "FREQ", "Hz", 0.001, 1, "frequency"),
    PointSpec(ROCOF, "DFREQ", "Hz/s", 0.01, 1, "rocof"),
    *_phasor(3, "VA", "V", V_NOMINAL),
    *_phasor(5, "VB", "V", V_NOMINAL),
    *_phasor(7, "VC", "V", V_NOMINAL),
    *_phasor(9, "IA", "A", I_NOMINAL),
    *_phasor(11, "IB", "A", I_NOMINAL),
    *_phasor(13, "IC", "A", I_NOMINAL),
)
BY_ID = {p.id: p for p in POINTS}
BY_NAME = {p.name: p for p in POINTS}


def quantize(spec: PointSpec, x: float) -> int:
    """``x`` (in the point's unit) as an integer at the point's resolution; angles wrap to ±180°."""
    q = round(x / spec.resolution)
    if spec.quantity == "angle":
        q = (q + 18_000) % 36_000 - 18_000
    return q


def wrap180(deg: float) -> float:
    """An angle in degrees brought into [-180, 180)."""
    return (deg + 180.0) % 360.0 - 180.0


@dataclass
class PmuWindow:
    """One window of PMU frames: timestamps, and per point id its floats and integers."""

    rate: int  # frames per second
    period: int  # nominal frame period, us
    times: list[int]  # per frame, us since 1970 (the PMU's SOC/FRACSEC)
    values: dict[int, list[int]]  # quantized, at the point's resolution
    floats: dict[int, list[float]]  # as measured, before quantization
    quality: list[int]  # per frame, wire quality bits
    points: tuple[PointSpec, ...] = POINTS

    @property
    def frames(self) -> int:
        return len(self.times)

    def series(self) -> readings.Series:
        """The window as one readings series, each point at its own delta order."""
        return readings.Series(
            times=list(self.times),
            period=self.period,
            points=[readings.Point(p.id, p.order, list(self.values[p.id])) for p in self.points],
            quality=list(self.quality),
        )


# Grid frequency: a damped second-order response (governors pull it back
# within about a minute) driven by random load changes, tuned so the
# deviation has a standard deviation of about 20 mHz and the true ROCOF a
# few mHz/s, as on a large interconnection in normal operation.
_F_SIGMA = 0.020  # Hz
_OMEGA = 2 * math.pi / 60.0  # rad/s
_ZETA = 0.7
_DRIVE = _F_SIGMA * math.sqrt(4 * _ZETA * _OMEGA**3)  # Hz/s per sqrt(s)
_R_SIGMA = _DRIVE / math.sqrt(4 * _ZETA * _OMEGA)  # stationary ROCOF, Hz/s

# Measurement noise (1 sigma) of a P-class PMU on a 132 kV bay.
_NOISE_FREQ = 0.0005  # Hz
_NOISE_ROCOF = 0.008  # Hz/s
_NOISE_VMAG = 0.00015  # of nominal (0.015 %)
_NOISE_IMAG = 0.0006  # of nominal (0.06 %)
_NOISE_VANG = 0.005  # deg
_NOISE_IANG = 0.03  # deg
_PHASE_OFFSET = {"A": 0.0, "B": -120.0, "C": 120.0}


def pmu_window(
    seconds: float = 5,
    rate: int = 50,
    seed: int = 1,
    t0_us: int = T0_US,
    time_step: tuple[int, int] | None = None,
) -> PmuWindow:
    """``seconds`` of frames at ``rate`` frames/s, deterministic for ``seed``.

    ``time_step=(i, us)`` shifts the timestamps of frame ``i`` and every
    later frame by ``us`` (a source clock that stepped): ``dt[i-1]`` shows it.
    """
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    rnd = random.Random(seed)
    gauss = rnd.gauss
    frames = int(round(seconds * rate))
    h = 1.0 / rate
    times = [t0_us + round(i * 1_000_000 / rate) for i in range(frames)]
    if time_step is not None:
        at, step = time_step
        times = [t + (step if i >= at else 0) for i, t in enumerate(times)]

    # Slowly varying operating point of the bay, drawn once per window.
    df = gauss(0.0, _F_SIGMA)  # frequency deviation, Hz
    rocof = gauss(0.0, _R_SIGMA)  # its derivative, Hz/s
    theta = rnd.uniform(-180.0, 180.0)  # phase A voltage angle vs the 50 Hz reference
    v_pu = 1.0 + gauss(0.0, 0.01)
    i_pu = rnd.uniform(0.35, 0.75)
    pf_angle = rnd.uniform(8.0, 30.0)  # current lags voltage, deg
    v_unb = {ph: gauss(0.0, 0.003) for ph in "ABC"}  # per-phase magnitude unbalance
    i_unb = {ph: gauss(0.0, 0.02) for ph in "ABC"}
    v_skew = {ph: gauss(0.0, 0.05) for ph in "ABC"}  # per-phase angle unbalance, deg
    i_skew = {ph: gauss(0.0, 0.5) for ph in "ABC"}

    floats: dict[int, list[float]] = {p.id: [] for p in POINTS}
    for _ in range(frames):
        floats[FREQ].append(NOMINAL_HZ + df + gauss(0.0, _NOISE_FREQ))
        floats[ROCOF].append(rocof + gauss(0.0, _NOISE_ROCOF))
        for ph in "ABC":
            va = theta + _PHASE_OFFSET[ph] + v_skew[ph]
            vm = BY_NAME[f"V{ph}.mag"]
            floats[vm.id].append(V_NOMINAL * (v_pu + v_unb[ph] + gauss(0.0, _NOISE_VMAG)))
            floats[vm.id + 1].append(wrap180(va + gauss(0.0, _NOISE_VANG)))
            im = BY_NAME[f"I{ph}.mag"]
            floats[im.id].append(I_NOMINAL * (i_pu + i_unb[ph] + gauss(0.0, _NOISE_IMAG)))
            ia = va - pf_angle + i_skew[ph]
            floats[im.id + 1].append(wrap180(ia + gauss(0.0, _NOISE_IANG)))
        # Advance one frame: the grid's frequency response, the load's
        # slow wander, and the phase turning by 360 deg * df * dt.
        rocof += h * (-2 * _ZETA * _OMEGA * rocof - _OMEGA**2 * df) + _DRIVE * math.sqrt(h) * gauss(
            0.0, 1.0
        )
        df += h * rocof
        theta = wrap180(theta + 360.0 * df * h)
        v_pu += gauss(0.0, 0.00002)
        i_pu += gauss(0.0, 0.0002)
        pf_angle += gauss(0.0, 0.002)

    values = {p.id: [quantize(p, x) for x in floats[p.id]] for p in POINTS}
    return PmuWindow(
        rate=rate,
        period=round(1_000_000 / rate),
        times=times,
        values=values,
        floats=floats,
        quality=[wire.Q_GOOD] * frames,
    )
