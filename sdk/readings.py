"""The readings body (kind 1): series of points sampled together, as docs/wire-format.md lays out.

``encode_body`` turns ``Series`` into the CBOR-ready structure of the spec
(lists and maps with integer keys, ready for a deterministic CBOR encoder);
``decode_body`` checks such a structure field by field and gives the series
back with absolute timestamps and per-sample values, qualities and gaps.
Anything the spec does not allow raises ``DecodeError(wire.R_PAYLOAD, ...)``.

    >>> from lightnode import readings
    >>> s = readings.Series(times=[0, 20_000, 41_000], period=20_000,
    ...                     points=[readings.Point(1, 1, [50_012, 50_013, 50_011])])
    >>> body = readings.encode_body([s])
    >>> body[0][2], body[0][3]          # dt, points
    ([0, 1000], [[1, 1, [50012, 1, -2]]])
    >>> readings.decode_body(body) == [s]
    True

Choices where the spec leaves room (the device encoder makes the same ones):

- the series quality is run-length encoded in maximal runs (no count 0, no
  two adjacent runs with the same quality); a point's own quality is
  written when the caller gives one, even if it equals the series quality;
- ``gaps`` (key 5) and ``agg`` (key 6) are left out when there is none;
  a gap index is ``0 <= i < n`` (0: samples missed before the first one),
  indexes strictly increasing, ``m >= 1``;
- points keep the caller's order; point ids are unique within a series;
- a decimated point's own quality, if any, is a sixth element
  ``[id, order, mins, maxs, means, quality]``; the order applies to each of
  the three lists alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightnode.errors import DecodeError
from lightnode.firmware.ln import wire

# CBOR's integer range (major types 0 and 1, at most 64 bits).
_INT_MIN = -(1 << 64)
_INT_MAX = (1 << 64) - 1


@dataclass
class Point:
    """One point of a series: its id in the device's point map and its samples.

    ``values`` are the integers at the point's fixed resolution, one per
    sample (for a decimated series: the floor means). ``mins``/``maxs`` are
    set only in a decimated series. ``quality`` is this point's own quality
    per sample, or None where the series quality applies.
    """

    id: int
    order: int
    values: list[int]
    quality: list[int] | None = None
    mins: list[int] | None = None
    maxs: list[int] | None = None


@dataclass
class Series:
    """Points sampled together, sharing one vector of source timestamps (us since 1970).

    ``quality`` is per sample (all good when not given); ``gaps`` are
    ``(i, m)``: m expected samples missed just before sample i; ``agg`` is
    the number of raw samples each sample aggregates, when decimated.
    """

    times: list[int]
    period: int
    points: list[Point]
    quality: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    agg: int | None = None

    def __post_init__(self) -> None:
        if not self.quality:
            self.quality = [wire.Q_GOOD] * len(self.times)

    @property
    def n(self) -> int:
        return len(self.times)

    @property
    def t0(self) -> int:
        return self.times[0]


# -- delta orders --------------------------------------------------------------


def delta(values: Sequence[int], order: int) -> list[int]:
    """``values`` differenced ``order`` times: each time x becomes [x0, x1-x0, x2-x1, ...]."""
    x = list(values)
    for _ in range(order):
        x = x[:1] + [x[i] - x[i - 1] for i in range(1, len(x))]
    return x


def undelta(values: Sequence[int], order: int) -> list[int]:
    """The inverse of ``delta``: ``order`` running sums."""
    x = list(values)
    for _ in range(order):
        for i in range(1, len(x)):
            x[i] += x[i - 1]
    return x


# -- quality runs --------------------------------------------------------------


def quality_runs(quality: Sequence[int]) -> list[list[int]]:
    """Per-sample quality as maximal runs ``[[count, quality], ...]``."""
    runs: list[list[int]] = []
    for q in quality:
        if runs and runs[-1][1] == q:
            runs[-1][0] += 1
        else:
            runs.append([1, q])
    return runs


# -- decimation ----------------------------------------------------------------


def decimate(series: Series, agg: int) -> Series:
    """``series`` decimated: each sample the min, max and floor mean of ``agg`` raw samples.

    Sample j covers raw samples ``j*agg`` to ``j*agg + agg - 1`` (the last
    one may cover fewer, when ``n`` is not a multiple of ``agg``); its time
    is the first one's, its quality the OR of theirs. A gap before raw
    sample i is reported at the sample that covers i.
    """
    if type(agg) is not int or agg < 1:
        raise ValueError("agg must be a positive integer")
    if series.agg is not None:
        raise ValueError("series is already decimated")
    _check_series(series)
    groups = [range(j, min(j + agg, series.n)) for j in range(0, series.n, agg)]

    def orq(q: list[int]) -> list[int]:
        out = []
        for g in groups:
            acc = 0
            for i in g:
                acc |= q[i]
            out.append(acc)
        return out

    points = []
    for p in series.points:
        v = p.values
        points.append(
            Point(
                p.id,
                p.order,
                [sum(v[i] for i in g) // len(g) for g in groups],
                None if p.quality is None else orq(p.quality),
                [min(v[i] for i in g) for g in groups],
                [max(v[i] for i in g) for g in groups],
            )
        )
    gaps: dict[int, int] = {}
    for i, m in series.gaps:
        gaps[i // agg] = gaps.get(i // agg, 0) + m
    return Series(
        times=[series.times[g[0]] for g in groups],
        period=series.period * agg,
        points=points,
        quality=orq(series.quality),
        gaps=sorted(gaps.items()),
        agg=agg,
    )


# -- encoding ------------------------------------------------------------------


def _is_int(x: object) -> bool:
    return type(x) is int


def _check_ints(name: str, xs: object, n: int) -> None:
    if not isinstance(xs, list) or len(xs) != n or not all(_is_int(x) for x in xs):
        raise TypeError(f"{name} must be a list of {n} integers")


def _check_quality(name: str, q: list[int]) -> None:
    for x in q:
        if x < 0 or x & ~wire.Q_ALL:
            raise ValueError(f"{name}: quality {x} has bits outside {wire.Q_ALL}")


def _check_series(s: Series) -> None:
    n = len(s.times)
    if n < 1:
        raise ValueError("a series has at least one sample")
    if n > wire.MAX_ITEMS:
        raise ValueError(f"a series has at most {wire.MAX_ITEMS} samples")
    _check_ints("times", s.times, n)
    if not _is_int(s.period) or s.period < 0 or s.period > _INT_MAX:
        raise ValueError("period must be an unsigned integer")
    if any(t < 0 or t > _INT_MAX for t in s.times):
        raise ValueError("times must be unsigned integers (us since 1970)")
    _check_ints("quality", s.quality, n)
    _check_quality("series", s.quality)
    if not s.points:
        raise ValueError("a series has at least one point")
    if len(s.points) > wire.MAX_ITEMS:
        raise ValueError(f"a series has at most {wire.MAX_ITEMS} points")
    ids = set()
    for p in s.points:
        if not _is_int(p.id) or p.id < 0 or p.id > _INT_MAX:
            raise ValueError("point id must be an unsigned integer")
        if p.id in ids:
            raise ValueError(f"point id {p.id} twice in one series")
        ids.add(p.id)
        if not _is_int(p.order) or not 0 <= p.order <= wire.MAX_DELTA_ORDER:
            raise ValueError(f"point {p.id}: order must be 0..{wire.MAX_DELTA_ORDER}")
        _check_ints(f"point {p.id} values", p.values, n)
        if p.quality is not None:
            _check_ints(f"point {p.id} quality", p.quality, n)
            _check_quality(f"point {p.id}", p.quality)
        if s.agg is None:
            if p.mins is not None or p.maxs is not None:
                raise ValueError(f"point {p.id}: mins/maxs only in a decimated series")
        else:
            _check_ints(f"point {p.id} mins", p.mins, n)
            _check_ints(f"point {p.id} maxs", p.maxs, n)
            assert p.mins is not None and p.maxs is not None  # for mypy; checked above
            for lo, mean, hi in zip(p.mins, p.values, p.maxs, strict=True):
                if not lo <= mean <= hi:
                    raise ValueError(f"point {p.id}: need min <= mean <= max")
    if s.agg is not None and (not _is_int(s.agg) or s.agg < 1 or s.agg > _INT_MAX):
        raise ValueError("agg must be a positive integer")
    last = -1
    for gap in s.gaps:
        if not (isinstance(gap, tuple | list) and len(gap) == 2 and all(map(_is_int, gap))):
            raise TypeError("a gap is (sample index, samples missed)")
        i, m = gap
        if not last < i < n or m < 1 or m > _INT_MAX:
            raise ValueError("gaps: indexes increasing within 0..n-1, counts >= 1")
        last = i


def _deltas(name: str, values: Sequence[int], order: int) -> list[int]:
    out = delta(values, order)
    if any(not _INT_MIN <= x <= _INT_MAX for x in out):
        raise ValueError(f"{name}: a difference does not fit a 64-bit CBOR integer")
    return out


def encode_series(series: Series) -> dict[int, Any]:
    """One series as the spec's map ``{0: t0, 1: period, 2: dt, 3: points, 4: quality, ...}``.

    Raises ValueError/TypeError for a series the spec cannot carry.
    """
    s = series
    _check_series(s)
    t = s.times
    dt = [t[i] - t[i - 1] - s.period for i in range(1, s.n)]
    if any(not _INT_MIN <= x <= _INT_MAX for x in dt):
        raise ValueError("a timestamp step does not fit a 64-bit CBOR integer")
    points: list[list[Any]] = []
    for p in s.points:
        name = f"point {p.id}"
        if s.agg is None:
            item: list[Any] = [p.id, p.order, _deltas(name, p.values, p.order)]
        else:
            assert p.mins is not None and p.maxs is not None  # checked in _check_series
            item = [
                p.id,
                p.order,
                _deltas(name, p.mins, p.order),
                _deltas(name, p.maxs, p.order),
                _deltas(name, p.values, p.order),
            ]
        if p.quality is not None:
            item.append(quality_runs(p.quality))
        points.append(item)
    out: dict[int, Any] = {
        wire.S_T0: s.times[0],
        wire.S_PERIOD: s.period,
        wire.S_DT: dt,
        wire.S_POINTS: points,
        wire.S_QUALITY: quality_runs(s.quality),
    }
    if s.gaps:
        out[wire.S_GAPS] = [[i, m] for i, m in s.gaps]
    if s.agg is not None:
        out[wire.S_AGG] = s.agg
    return out


def encode_body(series_list: Sequence[Series]) -> list[dict[int, Any]]:
    """A readings body: the list of series maps, ready for deterministic CBOR."""
    if not series_list:
        raise ValueError("a readings body has at least one series")
    if len(series_list) > wire.MAX_ITEMS:
        raise ValueError(f"a readings body has at most {wire.MAX_ITEMS} series")
    return [encode_series(s) for s in series_list]


# -- decoding ------------------------------------------------------------------


def _bad(detail: str) -> DecodeError:
    return DecodeError(wire.R_PAYLOAD, detail)


def _list(x: object, what: str, n: int | None = None) -> list[Any]:
    if not isinstance(x, list):
        raise _bad(f"{what}: not an array")
    if len(x) > wire.MAX_ITEMS:
        raise DecodeError(wire.R_OVERSIZED, f"{what}: over {wire.MAX_ITEMS} entries")
    if n is not None and len(x) != n:
        raise _bad(f"{what}: {len(x)} entries, expected {n}")
    return x


def _int(x: object, what: str, lo: int = _INT_MIN, hi: int = _INT_MAX) -> int:
    if type(x) is not int:
        raise _bad(f"{what}: not an integer")
    if not lo <= x <= hi:
        raise _bad(f"{what}: {x} out of range {lo}..{hi}")
    return x


def _uint(x: object, what: str) -> int:
    return _int(x, what, 0, _INT_MAX)


def _ints(x: object, what: str, n: int) -> list[int]:
    return [_int(v, what) for v in _list(x, what, n)]


def _decode_quality(x: object, what: str, n: int) -> list[int]:
    runs = _list(x, what)
    out: list[int] = []
    last = -1
    for run in runs:
        run = _list(run, what + " run", 2)
        count = _int(run[0], what + " count", 1, n)
        q = _uint(run[1], what + " quality")
        if q & ~wire.Q_ALL:
            raise _bad(f"{what}: quality {q} has unknown bits")
        if q == last:
            raise _bad(f"{what}: two adjacent runs of quality {q}")
        last = q
        if len(out) + count > n:
            raise _bad(f"{what}: counts add up to more than n={n}")
        out.extend([q] * count)
    if len(out) != n:
        raise _bad(f"{what}: counts add up to {len(out)}, n={n}")
    return out


def decode_series(m: object) -> Series:
    """One series map checked against the spec; DecodeError(bad-payload) if it is not right."""
    if not isinstance(m, dict):
        raise _bad("series: not a map")
    for k in m:
        if type(k) is not int or not wire.S_T0 <= k <= wire.S_AGG:
            raise _bad(f"series: unknown key {k!r}")
    for k in (wire.S_T0, wire.S_PERIOD, wire.S_DT, wire.S_POINTS, wire.S_QUALITY):
        if k not in m:
            raise _bad(f"series: key {k} missing")
    t0 = _uint(m[wire.S_T0], "t0")
    period = _uint(m[wire.S_PERIOD], "period")
    dt = [_int(x, "dt") for x in _list(m[wire.S_DT], "dt")]
    n = len(dt) + 1
    times = [t0]
    for d in dt:
        t = times[-1] + period + d
        if not 0 <= t <= _INT_MAX:
            raise _bad("dt: a timestamp outside 0..2^64-1")
        times.append(t)
    agg = None
    if wire.S_AGG in m:
        agg = _int(m[wire.S_AGG], "agg", 1, _INT_MAX)
    quality = _decode_quality(m[wire.S_QUALITY], "quality", n)
    gaps: list[tuple[int, int]] = []
    if wire.S_GAPS in m:
        raw_gaps = _list(m[wire.S_GAPS], "gaps")
        if not raw_gaps:
            raise _bad("gaps: present but empty")
        last = -1
        for g in raw_gaps:
            g = _list(g, "gap", 2)
            i = _int(g[0], "gap index", 0, n - 1)
            if i <= last:
                raise _bad("gaps: indexes not increasing")
            last = i
            gaps.append((i, _int(g[1], "gap count", 1, _INT_MAX)))
    raw_points = _list(m[wire.S_POINTS], "points")
    if not raw_points:
        raise _bad("points: none")
    points = []
    ids = set()
    lists = 1 if agg is None else 3
    for rp in raw_points:
        rp = _list(rp, "point")
        if len(rp) not in (2 + lists, 3 + lists):
            raise _bad(f"point: {len(rp)} entries, expected {2 + lists} or {3 + lists}")
        pid = _uint(rp[0], "point id")
        if pid in ids:
            raise _bad(f"point {pid} twice")
        ids.add(pid)
        what = f"point {pid}"
        order = _int(rp[1], what + " order", 0, wire.MAX_DELTA_ORDER)
        cols = [undelta(_ints(rp[2 + j], what + " values", n), order) for j in range(lists)]
        pq = None
        if len(rp) == 3 + lists:
            pq = _decode_quality(rp[2 + lists], what + " quality", n)
        if agg is None:
            points.append(Point(pid, order, cols[0], pq))
        else:
            mins, maxs, means = cols
            for lo, mean, hi in zip(mins, means, maxs, strict=True):
                if not lo <= mean <= hi:
                    raise _bad(f"{what}: not min <= mean <= max")
            points.append(Point(pid, order, means, pq, mins, maxs))
    return Series(times, period, points, quality, gaps, agg)


def decode_body(body: object) -> list[Series]:
    """A readings body (kind 1) checked and decoded; DecodeError(bad-payload) if it is not right."""
    series = _list(body, "body")
    if not series:
        raise _bad("body: no series")
    return [decode_series(s) for s in series]
