"""The readings body (kind 1): round trips, refusals, the PMU window, the bench's frames."""

from __future__ import annotations

import copy
import hashlib
import math
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode import readings
from lightnode.errors import DecodeError
from lightnode.firmware.ln import wire
from lightnode.readings import Point, Series
from lightnode.simulator import signals

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _window  # noqa: E402
import compactness  # noqa: E402


def cbor_round_trip(series: list[Series]) -> list[Series]:
    data = cbor2.dumps(readings.encode_body(series), canonical=True)
    return readings.decode_body(cbor2.loads(data))


# -- delta orders, exactly as the spec words them ---------------------------------


def test_delta_orders_follow_the_spec():
    x = [5, 7, 10, 10]
    assert readings.delta(x, 0) == [5, 7, 10, 10]
    assert readings.delta(x, 1) == [5, 2, 3, 0]
    # order 2 applies the same step again, first element included: [5, 2-5, 3-2, 0-3]
    assert readings.delta(x, 2) == [5, -3, 1, -3]
    for k in (0, 1, 2):
        assert readings.undelta(readings.delta(x, k), k) == x


def test_small_series_encodes_to_the_spec_map():
    s = Series(
        times=[1_000_000, 1_020_000, 1_041_000],
        period=20_000,
        points=[Point(1, 1, [50_012, 50_013, 50_011]), Point(4, 2, [100, 110, 125], [0, 2, 2])],
        quality=[0, 0, 16],
        gaps=[(2, 1)],
    )
    assert readings.encode_body([s]) == [
        {
            0: 1_000_000,
            1: 20_000,
            2: [0, 1000],
            3: [[1, 1, [50_012, 1, -2]], [4, 2, [100, -90, 5], [[1, 0], [2, 2]]]],
            4: [[2, 0], [1, 16]],
            5: [[2, 1]],
        }
    ]
    assert cbor_round_trip([s]) == [s]


def test_decimation_min_max_floor_mean():
    s = Series(
        times=[0, 10, 20, 30, 40],
        period=10,
        points=[Point(3, 1, [-1, -2, 4, 6, 7], [0, 1, 0, 0, 4])],
        quality=[0, 0, 2, 0, 0],
        gaps=[(1, 2), (3, 1)],
    )
    d = readings.decimate(s, 2)
    assert d.times == [0, 20, 40] and d.period == 20 and d.agg == 2
    p = d.points[0]
    assert p.mins == [-2, 4, 7] and p.maxs == [-1, 6, 7]
    assert p.values == [-2, 5, 7]  # floor(-3/2) = -2
    assert p.quality == [1, 0, 4]
    assert d.quality == [0, 2, 0]
    assert d.gaps == [(0, 2), (1, 1)]
    body = readings.encode_body([d])
    assert body[0][wire.S_AGG] == 2
    assert body[0][wire.S_POINTS][0][:5] == [3, 1, [-2, 6, 3], [-1, 7, 1], [-2, 7, 2]]
    assert cbor_round_trip([d]) == [d]


# -- property: decode(encode(x)) == x ---------------------------------------------

QUALITIES = st.sampled_from([0, 0, 0, 1, 2, 4, 8, 16, 32, 18, 63])
BIG = 1 << 61  # order-2 differences of values within +-2^61 stay within 64 bits


@st.composite
def series_strategy(draw: Any, decimated: bool | None = None) -> Series:
    n = draw(st.integers(1, 30))
    period = draw(st.one_of(st.integers(0, 100_000), st.integers(0, 1 << 40)))
    t0 = draw(st.one_of(st.integers(0, 1 << 20), st.integers(0, 1 << 62)))
    times = [t0]
    for _ in range(n - 1):
        step = draw(st.integers(-min(times[-1], 50_000), 50_000))
        times.append(times[-1] + step)
    if decimated is None:
        decimated = draw(st.booleans())
    values = st.one_of(st.integers(-30, 30), st.integers(-70_000, 70_000), st.integers(-BIG, BIG))
    ids = draw(st.lists(st.integers(0, 1 << 40), min_size=1, max_size=4, unique=True))
    points = []
    for pid in ids:
        vals = draw(st.lists(values, min_size=n, max_size=n))
        quality = draw(st.none() | st.lists(QUALITIES, min_size=n, max_size=n))
        order = draw(st.integers(0, wire.MAX_DELTA_ORDER))
        if decimated:
            lo = [v - draw(st.integers(0, 1000)) for v in vals]
            hi = [v + draw(st.integers(0, 1000)) for v in vals]
            points.append(Point(pid, order, vals, quality, lo, hi))
        else:
            points.append(Point(pid, order, vals, quality))
    gap_at = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=4))
    gaps = [(i, draw(st.integers(1, 1 << 33))) for i in sorted(gap_at)]
    return Series(
        times=times,
        period=period,
        points=points,
        quality=draw(st.lists(QUALITIES, min_size=n, max_size=n)),
        gaps=gaps,
        agg=draw(st.integers(1, 3600)) if decimated else None,
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(series_strategy(), min_size=1, max_size=3))
def test_round_trip(series):
    assert readings.decode_body(readings.encode_body(series)) == series
    assert cbor_round_trip(series) == series


@settings(max_examples=50)
@given(series_strategy(decimated=False), st.integers(1, 7))
def test_decimate_then_round_trip(series, agg):
    d = readings.decimate(series, agg)
    assert d.n == math.ceil(series.n / agg)
    assert cbor_round_trip([d]) == [d]


# -- refusals ----------------------------------------------------------------------


def valid_body() -> list[dict[int, Any]]:
    s = Series(
        times=[100, 120, 140],
        period=20,
        points=[Point(1, 1, [5, 6, 7]), Point(2, 2, [1, 2, 4], [0, 0, 1])],
        quality=[0, 2, 2],
        gaps=[(1, 3)],
    )
    return readings.encode_body([s])


def valid_decimated() -> list[dict[int, Any]]:
    s = Series(times=[0, 20], period=20, points=[Point(1, 1, [5, 6], None, [4, 6], [6, 7])], agg=4)
    return readings.encode_body([s])


def _set(path: tuple, value: Any, body: Any = None):
    body = copy.deepcopy(valid_body() if body is None else body)
    node = body
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


BAD = {
    "not a list": {0: 1},
    "no series": [],
    "series not a map": [[1, 2]],
    "missing t0": _set((0, 0), KeyError),
    "missing quality": _set((0, 4), KeyError),
    "unknown key": _set((0, 7), 1),
    "text key": _set((0, "t0"), 1),
    "negative t0": _set((0, 0), -1),
    "bool t0": _set((0, 0), True),
    "float period": _set((0, 1), 20.0),
    "negative period": _set((0, 1), -20),
    "t0 over 64 bits": _set((0, 0), 1 << 64),
    "dt not a list": _set((0, 2), 0),
    "dt entry text": _set((0, 2, 0), "0"),
    "time before 1970": _set((0, 2, 0), -200),
    "n mismatch, values short": _set((0, 3, 0, 2), [5, 1]),
    "n mismatch, values long": _set((0, 3, 0, 2), [5, 1, 1, 1]),
    "order 3": _set((0, 3, 0, 1), 3),
    "order -1": _set((0, 3, 0, 1), -1),
    "value float": _set((0, 3, 0, 2, 1), 1.0),
    "value none": _set((0, 3, 0, 2, 1), None),
    "value over 64 bits": _set((0, 3, 0, 2, 1), -(1 << 64) - 1),
    "point too short": _set((0, 3, 0), [1, 1]),
    "point too long": _set((0, 3, 0), [1, 1, [5, 1, 1], [[3, 0]], 0]),
    "point id negative": _set((0, 3, 0, 0), -1),
    "point id twice": _set((0, 3, 1, 0), 1),
    "no points": _set((0, 3), []),
    "quality short": _set((0, 4), [[1, 0], [1, 2]]),
    "quality long": _set((0, 4), [[1, 0], [3, 2]]),
    "quality count 0": _set((0, 4), [[0, 1], [1, 0], [2, 2]]),
    "quality runs not maximal": _set((0, 4), [[1, 0], [1, 2], [1, 2]]),
    "quality unknown bit": _set((0, 4), [[1, 0], [2, 64]]),
    "quality run not a pair": _set((0, 4), [[1, 0, 0], [2, 2]]),
    "point quality short": _set((0, 3, 1, 3), [[2, 0]]),
    "gaps empty": _set((0, 5), []),
    "gap index n": _set((0, 5), [[3, 1]]),
    "gap count 0": _set((0, 5), [[1, 0]]),
    "gaps not increasing": _set((0, 5), [[2, 1], [1, 1]]),
    "gaps same index": _set((0, 5), [[1, 1], [1, 2]]),
    "gap not a pair": _set((0, 5), [[1]]),
    "agg 0": _set((0, 6), 0, valid_decimated()),
    "agg on raw points": _set((0, 6), 4),
    "decimated point raw": _set((0, 3, 0), [1, 1, [5, 1]], valid_decimated()),
    "decimated min above mean": _set((0, 3, 0, 2), [6, 0], valid_decimated()),
    "decimated max below mean": _set((0, 3, 0, 3), [5, 0], valid_decimated()),
}


def test_valid_bodies_decode():
    assert readings.decode_body(valid_body())[0].gaps == [(1, 3)]
    assert readings.decode_body(valid_decimated())[0].agg == 4


@pytest.mark.parametrize("name", sorted(BAD))
def test_refusals(name):
    with pytest.raises(DecodeError) as e:
        readings.decode_body(BAD[name])
    assert e.value.reason == wire.R_PAYLOAD


def test_oversized_array_refused_as_oversized():
    body = _set((0, 2), [0] * (wire.MAX_ITEMS + 1))
    with pytest.raises(DecodeError) as e:
        readings.decode_body(body)
    assert e.value.reason == wire.R_OVERSIZED


leaves = st.one_of(
    st.integers(-(1 << 65), 1 << 65),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.binary(max_size=3),
)
nested = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(-1, 8) | st.text(max_size=2), inner, max_size=7)
    ),
    max_leaves=40,
)


@settings(max_examples=300)
@given(nested)
def test_any_structure_decodes_or_raises_decode_error(x):
    try:
        readings.decode_body(x)
    except DecodeError:
        pass


@settings(max_examples=300)
@given(st.data())
def test_mutated_body_decodes_or_raises_decode_error(data):
    body = valid_body() if data.draw(st.booleans()) else valid_decimated()
    node: Any = body
    # walk to a random container and replace one of its entries
    while True:
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        k = data.draw(st.sampled_from(keys))
        child = node[k]
        if isinstance(child, list | dict) and child and data.draw(st.booleans()):
            node = child
            continue
        node[k] = data.draw(nested)
        break
    try:
        readings.decode_body(body)
    except DecodeError:
        pass


def test_encoder_refuses_callers_mistakes():
    with pytest.raises(ValueError):
        readings.encode_body([])
    with pytest.raises(ValueError):
        readings.encode_body([Series([0, 1], 1, [Point(1, 3, [0, 0])])])
    with pytest.raises(TypeError):
        readings.encode_body([Series([0, 1], 1, [Point(1, 1, [0])])])
    with pytest.raises(ValueError):
        readings.encode_body([Series([0, 1], 1, [Point(1, 1, [0, 0]), Point(1, 1, [0, 0])])])
    with pytest.raises(ValueError):  # an order-1 difference over 64 bits
        readings.encode_body([Series([0, 1], 1, [Point(1, 1, [-(1 << 63), 1 << 63])])])
    with pytest.raises(ValueError):
        readings.encode_body([Series([0, 1], 1, [Point(1, 1, [0, 0])], quality=[0, 64])])


# -- the PMU window ------------------------------------------------------------------


def test_pmu_window_round_trips_losslessly():
    w = signals.pmu_window(seconds=5, rate=50, seed=3)
    assert w.frames == 250 and w.period == 20_000
    (s,) = cbor_round_trip([w.series()])
    assert s.times == w.times
    for p, spec in zip(s.points, w.points, strict=True):
        assert p.id == spec.id and p.order == spec.order
        assert p.values == w.values[spec.id]  # exactly the quantized integers
        for q, x in zip(p.values, w.floats[spec.id], strict=True):
            err = q * spec.resolution - x
            if spec.quantity == "angle":
                err = (err + 180.0) % 360.0 - 180.0
            assert abs(err) <= spec.resolution / 2 * (1 + 1e-9)


def test_pmu_window_is_realistic_and_deterministic():
    w = signals.pmu_window(seed=11)
    assert w == signals.pmu_window(seed=11)
    assert w != signals.pmu_window(seed=12)
    f = w.floats[signals.FREQ]
    assert all(abs(x - 50.0) < 0.2 for x in f)
    # the voltage angle turns at 360 deg * (f - 50) per second
    va = w.floats[signals.BY_NAME["VA.ang"].id]
    turned = (va[-1] - va[0] + 180.0) % 360.0 - 180.0
    expected = 360.0 * (sum(f[:-1]) / (len(f) - 1) - 50.0) * (len(f) - 1) / w.rate
    assert abs(turned - expected) < 0.5
    # phase B lags phase A by 120 deg
    vb = w.floats[signals.BY_NAME["VB.ang"].id]
    assert abs(((va[0] - vb[0]) % 360.0) - 120.0) < 1.0

    # currents are noisier than voltages (in steps of their resolution)
    def spread(name: str) -> float:
        x = w.values[signals.BY_NAME[name].id]
        d = [b - a for a, b in zip(x, x[1:], strict=False)]
        return math.sqrt(sum(v * v for v in d) / len(d))

    assert spread("IA.mag") > 2 * spread("VA.mag")


def test_timestamp_step_shows_in_dt():
    w = signals.pmu_window(seconds=1, time_step=(10, 1000))
    dt = readings.encode_body([w.series()])[0][wire.S_DT]
    assert dt[9] == 1000
    assert dt[:9] == [0] * 9 and dt[10:] == [0] * 39


# -- the bench's transaction and C37.118 frames --------------------------------------


def test_window_transaction_is_the_specs_bytes():
    from nacl.signing import VerifyKey

    a = _window.signed_transaction()
    b = _window.signed_transaction()
    assert a["wire"] == b["wire"]
    assert a["protected"] == bytes.fromhex("a4012704484c4e0001a5c3e7011901022f190103183c")
    assert len(a["to_be_signed"]) == 70  # docs/wire-format.md: 70 bytes with an 8-byte id
    assert cbor2.loads(a["to_be_signed"]) == [
        "Signature1",
        a["protected"],
        b"",
        hashlib.sha256(a["payload"]).digest(),
    ]
    VerifyKey(a["public_key"]).verify(a["to_be_signed"], a["signature"])
    tx = cbor2.loads(a["wire"])
    assert tx[0].tag == wire.COSE_SIGN1_TAG and tx[0].value[1] == {}
    payload = cbor2.loads(tx[1])
    assert sorted(payload) == list(wire.PAYLOAD_KEYS)
    assert cbor2.dumps(payload, canonical=True) == tx[1]
    assert payload[wire.P_KIND] == wire.KIND_READINGS
    assert readings.decode_body(payload[wire.P_BODY]) == [a["window"].series()]
    assert len(a["wire"]) <= wire.MAX_TX_BYTES
    # built again with cbor2 alone: the same bytes (all map keys here are small uints,
    # for which cbor2's canonical order is RFC 8949's bytewise order)
    sign1 = cbor2.CBORTag(18, [a["protected"], {}, a["payload_hash"], a["signature"]])
    assert cbor2.dumps([sign1, a["payload"]], canonical=True) == a["wire"]
    # and the SDK's decoder takes it, signature, readings and all
    from lightnode import wire as codec

    tx = codec.decode(a["wire"])
    tx.verify(a["public_key"])
    assert tx.readings() == [a["window"].series()]


def test_crc_ccitt_check_value():
    # CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR), the
    # CRC C37.118.2 specifies for CHK; its catalogued check value over "123456789" is
    # 0x29B1 (Greg Cook, "Catalogue of parametrised CRC algorithms", CRC-16/IBM-3740).
    assert compactness.crc_ccitt(b"123456789") == 0x29B1
    assert compactness.crc_ccitt(b"") == 0xFFFF


def test_c37118_frames_layout():
    w = signals.pmu_window(seconds=0.1)
    for integer, size in ((False, 74), (True, 46)):
        for frame, t in zip(compactness.c37118_frames(w, integer), w.times, strict=True):
            assert len(frame) == size
            assert frame[:2] == b"\xaa\x01"
            assert int.from_bytes(frame[2:4], "big") == size
            assert int.from_bytes(frame[6:10], "big") == t // 1_000_000
            assert int.from_bytes(frame[10:14], "big") == t % 1_000_000
            assert int.from_bytes(frame[-2:], "big") == compactness.crc_ccitt(frame[:-2])
            # a frame with its CRC appended leaves a zero remainder
            assert compactness.crc_ccitt(frame) == 0
