# ln.points keeps a point map's quantize and alarm rules without the map's
# parser; it must give exactly the map's integers and states, and the
# window's typed storage (t0 plus array('i') offsets) must encode as lists do.
from array import array

from lightnode.drivers import pointmap
from ln import points, readings, wire

PORTS = ("unix",)

MAP = {
    "format": 1,
    "name": "t",
    "device": {"kind": "pmu", "model": "test PMU"},
    "source": {"protocol": "c37118", "idcode": 7},
    "points": [
        {"id": 1, "name": "F", "quantity": "frequency", "unit": "Hz", "resolution": 0.001,
         "order": 1, "read": {"kind": "freq"}, "alarm": {"low": 49.8, "high": 50.2}},
        {"id": 2, "name": "V", "quantity": "voltage", "unit": "V", "resolution": 7.62102355330306,
         "order": 1, "read": {"kind": "phasor-mag", "index": 0}},
        {"id": 3, "name": "A", "quantity": "angle", "unit": "deg", "resolution": 0.01,
         "order": 2, "read": {"kind": "phasor-angle", "index": 0}, "alarm": {"high": 170}},
    ],
}


def _map():
    import json

    return pointmap.load(json.dumps(MAP))


def _values():
    out = [0, 1, -1, 0.0005, -0.0005, 0.0015, 49.8, 50.2, 50.2000001, 49.79999, 1e6, -1e6,
           76210.2355330306, 3.81051177665153, 170, 170.00001, -179.995, 12345]
    x = 0.1
    for _ in range(40):
        out.append(x)
        out.append(-x * 3.7)
        x = x * 1.37 + 0.013
    return out


def test_quantize_and_alarms_match_the_map():
    m = _map()
    for p in m.points:
        pt = points.plan_point(p)
        for x in _values():
            v, bad = points.quantize(pt[points.P_RES], x)
            want = m.quantize(p, x)
            if -(1 << 31) <= want < (1 << 31):
                assert (v, bad) == (want, 0), (p.id, x, v, want)
            else:
                assert bad == wire.Q_OVERFLOW
            assert points.alarm_state(pt, x) == m.alarm_state(p, x), (p.id, x)


def test_not_a_number_is_invalid_not_an_error():
    pt = points.plan_point(_map().points[0])
    assert points.quantize(pt[points.P_RES], float("nan")) == (0, wire.Q_INVALID)
    assert points.quantize(pt[points.P_RES], float("inf")) == (0, wire.Q_INVALID)


def test_typed_window_encodes_as_lists():
    t0 = 1764000000000000
    offs = [0, 100000, 200003, 299998, 500000]
    vals = [50012, 50013, 50011, -7, 1 << 30]
    q = bytearray([0, 0, 1, 0, 2])
    ta = array("i", offs)
    va = array("i", vals)
    got = readings.series_cbor(memoryview(ta)[:4], 100000, [(1, 1, memoryview(va)[:4])],
                               memoryview(q)[:4], [(3, 1)], t0=t0)
    want = readings.series_cbor([t0 + x for x in offs[:4]], 100000, [(1, 1, vals[:4])],
                                list(q[:4]), [(3, 1)])
    assert got.data == want.data
