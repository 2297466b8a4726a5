# readings.series_cbor writes a series straight into CBOR (no list per
# point); it must give exactly the bytes of cbor.dumps(readings.series(...)).
# readings.window_cbor (a window decimated to one sample) likewise those of
# cbor.dumps(readings.decimate(..., agg=n)).
from ln import cbor, readings

PORTS = ("unix", "wasm")


def _lcg(seed):
    # small deterministic generator that behaves the same on every port
    state = [seed]

    def nxt(lo, hi):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return lo + state[0] % (hi - lo + 1)

    return nxt


def _case(seed, n, k, with_quality, with_gaps, big):
    rnd = _lcg(seed)
    t = 1764000000000000 + rnd(0, 10**6)
    times = []
    for _ in range(n):
        times.append(t)
        t += 20000 + (rnd(-3, 3) if rnd(0, 9) == 0 else 0)
    points = []
    for pid in range(1, k + 1):
        base = rnd(-(1 << 40), 1 << 40) if big else rnd(-30000, 30000)
        vals = tuple(base + rnd(-50, 50) * (i % 7) for i in range(n))
        order = pid % 3
        if with_quality and pid == 2:
            points.append((pid, order, vals, [rnd(0, 1) for _ in range(n)]))
        else:
            points.append((pid, order, vals))
    quality = [0 if rnd(0, 4) else 2 for _ in range(n)] if with_quality else None
    gaps = [(1, 2), (n - 1, 1)] if with_gaps and n > 2 else None
    return times, 20000, points, quality, gaps


def test_stream_equals_map_encoding():
    cases = 0
    for seed in range(1, 25):
        for n in (1, 2, 3, 17):
            args = _case(seed, n, 1 + seed % 5, seed % 2 == 0, seed % 3 == 0, seed % 4 == 0)
            want = cbor.dumps(readings.series(*args))
            got = readings.series_cbor(*args)
            assert got.data == want, (seed, n)
            cases += 1
    assert cases == 96


def test_window_decimated_equals_decimate():
    cases = 0
    for seed in range(1, 25):
        for n in (1, 2, 3, 17):
            args = _case(seed, n, 1 + seed % 5, seed % 2 == 0, seed % 3 == 0, seed % 4 == 0)
            times, period, points, quality, gaps = args
            want = cbor.dumps(readings.decimate(times, period, points, n, quality, gaps))
            assert readings.window_cbor(*args).data == want, (seed, n)
            # offsets from t0, as a board's window buffers hold them
            t0 = times[0]
            rel = [t - t0 for t in times]
            assert readings.window_cbor(rel, period, points, quality, gaps, t0=t0).data == want
            cases += 1
    assert cases == 96
    (back,) = readings.decode_body(cbor.loads(cbor.dumps([readings.window_cbor(*args)])))
    assert back["agg"] == 17 and len(back["times"]) == 1
    for got, want in zip(back["points"], points):
        assert got[4] == [min(want[2])] and got[5] == [max(want[2])]
        assert got[2] == [sum(want[2]) // 17]


def test_stream_in_a_body_decodes_back():
    times, period, points, quality, gaps = _case(7, 50, 4, True, True, False)
    body = cbor.dumps([readings.series_cbor(times, period, points, quality, gaps)])
    (back,) = readings.decode_body(cbor.loads(body))
    assert back["times"] == times
    assert back["quality"] == quality
    assert [tuple(g) for g in back["gaps"]] == gaps
    for got, want in zip(back["points"], points):
        assert got[0] == want[0] and got[1] == want[1]
        assert list(got[2]) == list(want[2])
        assert (got[3] is None) == (len(want) == 3)


def test_stream_refuses_what_series_refuses():
    for bad in (
        ([], 20000, [(1, 1, ())]),
        ([1, 2], 20000, [(1, 3, (1, 2))]),
        ([1, 2], 20000, [(1, 1, (1,))]),
        ([1, 2], 20000, []),
    ):
        try:
            readings.series_cbor(*bad)
        except (ValueError, TypeError):
            pass
        else:
            raise AssertionError("accepted %r" % (bad,))
