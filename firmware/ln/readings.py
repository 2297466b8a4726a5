"""The readings body (kind 1) of docs/wire-format.md: series of points sampled together.

``series`` turns one raw series (timestamps, points, quality, gaps) into
the spec's map; ``decimate`` makes the min/max/mean series the journal
keeps when flash runs short (``window_cbor``: a whole window as one
sample, encoded as the batcher signs it); a readings body is a list of
these maps.
``decode_body`` checks a body field by field (``TxError(bad-payload)``)
and gives the samples back. The SDK's ``lightnode.readings`` follows the
same spec with the same choices, and the two give the same bytes.

    from ln import readings
    s = readings.series([t0, t0 + 20000, t0 + 41000], 20000,
                        [(1, 1, [50012, 50013, 50011])])
    # {0: t0, 1: 20000, 2: [0, 1000], 3: [[1, 1, [50012, 1, -2]]], 4: [[3, 0]]}

Choices where the spec leaves room (the SDK makes the same ones): quality
runs are maximal (no count 0, no two adjacent runs of one quality); a
point's own quality is written whenever the caller gives one; gaps (key
5) and agg (key 6) are left out when there are none; a gap index is
``0 <= i < n``, indexes strictly increasing, counts ``>= 1``; a series has
one point at least, point ids unique within it, in the caller's order; a
decimated point is ``[id, order, mins, maxs, means]`` plus its own
quality as a sixth entry, the order applying to each list alike.
"""

from array import array

from . import cbor, wire
from .errors import TxError

_INT_MIN = -(1 << 64)
_INT_MAX = (1 << 64) - 1


def delta(values, order):
    """``values`` differenced ``order`` times: each time x becomes [x0, x1-x0, x2-x1, ...]."""
    x = list(values)
    for _ in range(order):
        for i in range(len(x) - 1, 0, -1):
            x[i] -= x[i - 1]
    return x


def undelta(values, order):
    """The inverse of ``delta``: ``order`` running sums."""
    x = list(values)
    for _ in range(order):
        for i in range(1, len(x)):
            x[i] += x[i - 1]
    return x


def quality_runs(quality):
    """Per-sample quality as maximal runs ``[[count, quality], ...]``."""
    runs = []
    for q in quality:
        if runs and runs[-1][1] == q:
            runs[-1][0] += 1
        else:
            runs.append([1, q])
    return runs


def _ints(name, xs, n):
    if isinstance(xs, (list, tuple)):
        if len(xs) == n:
            for x in xs:
                if type(x) is not int:
                    break
            else:
                return
    elif isinstance(xs, (memoryview, bytearray, bytes, array)) and len(xs) == n:
        return  # typed storage holds integers only (a board's window buffers)
    raise TypeError("%s must be a list of %d integers" % (name, n))


def _quality_bits(name, q):
    for x in q:
        if x < 0 or x & ~wire.Q_ALL:
            raise ValueError("%s: quality %d has bits outside %d" % (name, x, wire.Q_ALL))


def _check_raw(times, period, points, quality, gaps, t0=0):
    """The caller's raw series, as the spec can carry it; returns the quality list."""
    n = len(times)
    if n < 1:
        raise ValueError("a series has at least one sample")
    if n > wire.MAX_ITEMS:
        raise ValueError("a series has at most %d samples" % wire.MAX_ITEMS)
    _ints("times", times, n)
    if type(period) is not int or not 0 <= period <= _INT_MAX:
        raise ValueError("period must be an unsigned integer")
    for t in times:
        if not 0 <= t + t0 <= _INT_MAX:
            raise ValueError("times must be unsigned integers (us since 1970)")
    if quality is None or not len(quality):
        quality = [wire.Q_GOOD] * n
    _ints("quality", quality, n)
    _quality_bits("series", quality)
    if not points:
        raise ValueError("a series has at least one point")
    if len(points) > wire.MAX_ITEMS:
        raise ValueError("a series has at most %d points" % wire.MAX_ITEMS)
    ids = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) not in (3, 4):
            raise TypeError("a point is (id, order, values) or (id, order, values, quality)")
        pid = p[0]
        if type(pid) is not int or not 0 <= pid <= _INT_MAX:
            raise ValueError("point id must be an unsigned integer")
        if pid in ids:
            raise ValueError("point id %d twice in one series" % pid)
        ids.append(pid)
        if type(p[1]) is not int or not 0 <= p[1] <= wire.MAX_DELTA_ORDER:
            raise ValueError("point %d: order must be 0..%d" % (pid, wire.MAX_DELTA_ORDER))
        _ints("point %d values" % pid, p[2], n)
        if len(p) == 4 and p[3] is not None:
            _ints("point %d quality" % pid, p[3], n)
            _quality_bits("point %d" % pid, p[3])
    last = -1
    for g in gaps or ():
        if not isinstance(g, (list, tuple)) or len(g) != 2:
            raise TypeError("a gap is (sample index, samples missed)")
        i, m = g
        if type(i) is not int or type(m) is not int:
            raise TypeError("a gap is (sample index, samples missed)")
        if not last < i < n or m < 1 or m > _INT_MAX:
            raise ValueError("gaps: indexes increasing within 0..n-1, counts >= 1")
        last = i
    return quality


def _deltas(pid, values, order):
    out = delta(values, order)
    for x in out:
        if not _INT_MIN <= x <= _INT_MAX:
            raise ValueError("point %d: a difference does not fit a 64-bit CBOR integer" % pid)
    return out


def _series_map(times, period, cols, quality, gaps, agg):
    # cols: [(id, order, [lists...], point quality or None)]; one list, or mins, maxs, means
    dt = [times[i] - times[i - 1] - period for i in range(1, len(times))]
    for x in dt:
        if not _INT_MIN <= x <= _INT_MAX:
            raise ValueError("a timestamp step does not fit a 64-bit CBOR integer")
    points = []
    for pid, order, lists, pq in cols:
        item = [pid, order]
        for values in lists:
            item.append(_deltas(pid, values, order))
        if pq is not None:
            item.append(quality_runs(pq))
        points.append(item)
    out = {
        wire.S_T0: times[0],
        wire.S_PERIOD: period,
        wire.S_DT: dt,
        wire.S_POINTS: points,
        wire.S_QUALITY: quality_runs(quality),
    }
    if gaps:
        out[wire.S_GAPS] = [[i, m] for i, m in gaps]
    if agg is not None:
        out[wire.S_AGG] = agg
    return out


def series(times, period, points, quality=None, gaps=None):
    """One readings series as the spec's map, ready for a readings body (a list of them).

    ``times``: the source timestamp of each of the n samples, us since
    1970; ``period``: the nominal sample period, us; ``points``: ``(id,
    order, values)`` or ``(id, order, values, quality)``, ``values`` n
    integers at the point's resolution, ``order`` 0..2 (1 for frequencies
    and magnitudes, 2 for angles), ``quality`` n per-sample qualities
    overriding the series' for this point; ``quality``: n per-sample
    qualities (None: all good); ``gaps``: ``(i, m)``, m samples missed just
    before sample i. ValueError/TypeError for what the spec cannot carry.
    """
    quality = _check_raw(times, period, points, quality, gaps)
    cols = [(p[0], p[1], [p[2]], p[3] if len(p) == 4 else None) for p in points]
    return _series_map(times, period, cols, quality, gaps, None)


def _put_runs(out, runs):
    cbor.head(out, 4, len(runs))
    for count, q in runs:
        out.append(0x82)
        cbor.put_int(out, count)
        cbor.put_int(out, q)


def series_cbor(times, period, points, quality=None, gaps=None, t0=0):
    """``series`` already encoded, as a ``cbor.Raw`` for a readings body: the same bytes.

    The differences are computed while writing, so no list per point is
    made: on a board the heap holds the samples and the output only.
    ``times``, ``values`` and ``quality`` may be lists, tuples, or typed
    storage (an ``array``, a ``bytearray``, a ``memoryview`` of one);
    ``t0`` is added to every time, so ``times`` may be offsets that fit
    an ``array('i')``.
    """
    quality = _check_raw(times, period, points, quality, gaps, t0)
    n = len(times)
    out = bytearray()
    cbor.head(out, 5, 6 if gaps else 5)
    out.append(wire.S_T0)
    cbor.put_int(out, times[0] + t0)
    out.append(wire.S_PERIOD)
    cbor.put_int(out, period)
    out.append(wire.S_DT)
    cbor.head(out, 4, n - 1)
    for i in range(1, n):
        cbor.put_int(out, times[i] - times[i - 1] - period)
    out.append(wire.S_POINTS)
    cbor.head(out, 4, len(points))
    for p in points:
        order = p[1]
        values = p[2]
        own = p[3] if len(p) == 4 else None
        cbor.head(out, 4, 3 if own is None else 4)
        cbor.put_int(out, p[0])
        cbor.put_int(out, order)
        cbor.head(out, 4, n)
        x1 = d1 = 0
        for i in range(n):
            x = values[i]
            if order == 0:
                e = x
            else:
                d = x - x1 if i else x
                e = d if order == 1 else (d - d1 if i else d)
                x1 = x
                d1 = d
            cbor.put_int(out, e)
        if own is not None:
            _put_runs(out, quality_runs(own))
    out.append(wire.S_QUALITY)
    _put_runs(out, quality_runs(quality))
    if gaps:
        out.append(wire.S_GAPS)
        cbor.head(out, 4, len(gaps))
        for i, m in gaps:
            out.append(0x82)
            cbor.put_int(out, i)
            cbor.put_int(out, m)
    return cbor.Raw(bytes(out))


def window_cbor(times, period, points, quality=None, gaps=None, t0=0):
    """A whole window decimated to one sample, encoded (a ``cbor.Raw``): its min, max and mean.

    The same bytes as ``cbor.dumps(decimate(times, period, points, n,
    quality, gaps))`` with ``n = len(times)`` (arguments as
    ``series_cbor``), made in one pass over the samples with nothing
    allocated per sample: what the batcher signs for a window when flash
    runs short.
    """
    quality = _check_raw(times, period, points, quality, gaps, t0)
    n = len(times)

    def orq(q):
        acc = 0
        for i in range(n):
            acc |= q[i]
        return acc

    out = bytearray()
    missed = 0
    for g in gaps or ():
        missed += g[1]
    cbor.head(out, 5, 7 if missed else 6)
    out.append(wire.S_T0)
    cbor.put_int(out, times[0] + t0)
    out.append(wire.S_PERIOD)
    cbor.put_int(out, period * n)
    out.append(wire.S_DT)
    out.append(0x80)  # one sample: no steps
    out.append(wire.S_POINTS)
    cbor.head(out, 4, len(points))
    for p in points:
        values = p[2]
        own = p[3] if len(p) == 4 else None
        lo = hi = acc = values[0]
        for i in range(1, n):
            x = values[i]
            acc += x
            if x < lo:
                lo = x
            elif x > hi:
                hi = x
        cbor.head(out, 4, 5 if own is None else 6)
        cbor.put_int(out, p[0])
        cbor.put_int(out, p[1])
        for x in (lo, hi, acc // n):  # one value: every delta order leaves it as it is
            out.append(0x81)
            cbor.put_int(out, x)
        if own is not None:
            _put_runs(out, ((1, orq(own)),))
    out.append(wire.S_QUALITY)
    _put_runs(out, ((1, orq(quality)),))
    if missed:
        out.append(wire.S_GAPS)
        _put_runs(out, ((0, missed),))
    out.append(wire.S_AGG)
    cbor.put_int(out, n)
    return cbor.Raw(bytes(out))


def decimate(times, period, points, agg, quality=None, gaps=None):
    """The decimated series map of a raw series (arguments as ``series``): ``agg`` samples in each.

    Sample j covers raw samples ``j*agg`` .. ``j*agg + agg - 1`` (the last
    may cover fewer when n is not a multiple of agg); its time is the
    first one's, its quality the OR of theirs, its values the min, max and
    floor of the integer mean. The period becomes ``period * agg``; a gap
    before raw sample i is reported at the sample that covers i (counts of
    gaps landing there added). Points become ``[id, order, mins, maxs,
    means]``, plus their own quality (ORed the same way) if they had one.
    """
    if type(agg) is not int or agg < 1:
        raise ValueError("agg must be a positive integer")
    quality = _check_raw(times, period, points, quality, gaps)
    n = len(times)
    starts = list(range(0, n, agg))

    def orq(q):
        out = []
        for s in starts:
            acc = 0
            for i in range(s, min(s + agg, n)):
                acc |= q[i]
            out.append(acc)
        return out

    cols = []
    for p in points:
        v = p[2]
        mins = []
        maxs = []
        means = []
        for s in starts:
            g = v[s : s + agg]
            mins.append(min(g))
            maxs.append(max(g))
            means.append(sum(g) // len(g))
        pq = p[3] if len(p) == 4 else None
        cols.append((p[0], p[1], [mins, maxs, means], None if pq is None else orq(pq)))
    dgaps = {}
    for i, m in gaps or ():
        dgaps[i // agg] = dgaps.get(i // agg, 0) + m
    dgaps = sorted(dgaps.items())
    for _, m in dgaps:
        if m > _INT_MAX:
            raise ValueError("gaps: more missed samples than a 64-bit integer holds")
    return _series_map([times[s] for s in starts], period * agg, cols, orq(quality), dgaps, agg)


# ---------------------------------------------------------------- checking


def _bad(detail):
    return TxError(wire.R_PAYLOAD, detail)


def _list(x, what, n=None):
    if type(x) is not list:
        raise _bad("%s: not an array" % what)
    if len(x) > wire.MAX_ITEMS:
        raise TxError(wire.R_OVERSIZED, "%s: over %d entries" % (what, wire.MAX_ITEMS))
    if n is not None and len(x) != n:
        raise _bad("%s: %d entries, expected %d" % (what, len(x), n))
    return x


def _int(x, what, lo=_INT_MIN, hi=_INT_MAX):
    if type(x) is not int:
        raise _bad("%s: not an integer" % what)
    if not lo <= x <= hi:
        raise _bad("%s: %d out of range %d..%d" % (what, x, lo, hi))
    return x


def _decode_quality(x, what, n):
    out = []
    last = -1
    for run in _list(x, what):
        run = _list(run, what + " run", 2)
        count = _int(run[0], what + " count", 1, n)
        q = _int(run[1], what + " quality", 0, _INT_MAX)
        if q & ~wire.Q_ALL:
            raise _bad("%s: quality %d has unknown bits" % (what, q))
        if q == last:
            raise _bad("%s: two adjacent runs of quality %d" % (what, q))
        last = q
        if len(out) + count > n:
            raise _bad("%s: counts add up to more than n=%d" % (what, n))
        out.extend([q] * count)
    if len(out) != n:
        raise _bad("%s: counts add up to %d, n=%d" % (what, len(out), n))
    return out


def decode_series(m):
    """One series map checked field by field; ``TxError(bad-payload)`` if it is not right.

    Returns a dict: ``times``, ``period``, ``points`` (``(id, order,
    values, quality, mins, maxs)``, values decoded; quality, mins, maxs
    None where absent; a decimated point's values are its means),
    ``quality`` (per sample), ``gaps`` (``(i, m)``), ``agg`` (None if raw).
    """
    if type(m) is not dict:
        raise _bad("series: not a map")
    for k in m:
        if type(k) is not int or not wire.S_T0 <= k <= wire.S_AGG:
            raise _bad("series: unknown key %r" % (k,))
    for k in (wire.S_T0, wire.S_PERIOD, wire.S_DT, wire.S_POINTS, wire.S_QUALITY):
        if k not in m:
            raise _bad("series: key %d missing" % k)
    t0 = _int(m[wire.S_T0], "t0", 0)
    period = _int(m[wire.S_PERIOD], "period", 0)
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
        agg = _int(m[wire.S_AGG], "agg", 1)
    quality = _decode_quality(m[wire.S_QUALITY], "quality", n)
    gaps = []
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
            gaps.append((i, _int(g[1], "gap count", 1)))
    raw_points = _list(m[wire.S_POINTS], "points")
    if not raw_points:
        raise _bad("points: none")
    points = []
    ids = []
    lists = 1 if agg is None else 3
    for rp in raw_points:
        rp = _list(rp, "point")
        if len(rp) != 2 + lists and len(rp) != 3 + lists:
            raise _bad("point: %d entries, expected %d or %d" % (len(rp), 2 + lists, 3 + lists))
        pid = _int(rp[0], "point id", 0)
        if pid in ids:
            raise _bad("point %d twice" % pid)
        ids.append(pid)
        what = "point %d" % pid
        order = _int(rp[1], what + " order", 0, wire.MAX_DELTA_ORDER)
        cols = []
        for j in range(lists):
            enc = [_int(v, what + " values") for v in _list(rp[2 + j], what + " values", n)]
            cols.append(undelta(enc, order))
        pq = None
        if len(rp) == 3 + lists:
            pq = _decode_quality(rp[2 + lists], what + " quality", n)
        if agg is None:
            points.append((pid, order, cols[0], pq, None, None))
        else:
            mins, maxs, means = cols
            for i in range(n):
                if not mins[i] <= means[i] <= maxs[i]:
                    raise _bad("%s: not min <= mean <= max" % what)
            points.append((pid, order, means, pq, mins, maxs))
    return {
        "times": times,
        "period": period,
        "points": points,
        "quality": quality,
        "gaps": gaps,
        "agg": agg,
    }


def decode_body(body):
    """A readings body (kind 1) checked field by field: a list of ``decode_series`` dicts."""
    lst = _list(body, "body")
    if not lst:
        raise _bad("body: no series")
    return [decode_series(s) for s in lst]
