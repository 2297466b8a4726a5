"""Fuzzing the point-map checker: whatever comes in, a PointMap or a PointMapError, nothing else.

Inputs: arbitrary JSON-like values, arbitrary text and bytes, and valid
maps (each protocol) with one field replaced, removed or added, or their
text cut, spliced or flipped. Every accepted map's canonical text must
load again to the same digest.

Bounded for CI; set ``LIGHTNODE_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode.drivers import pointmap

EXAMPLES = int(os.environ.get("LIGHTNODE_FUZZ_EXAMPLES", "800"))
fuzz = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BASES: list[dict[str, Any]] = [
    {"format": 1, "name": "m", "window_s": 5, "device": {"kind": "meter", "model": "x"},
     "source": {"protocol": "modbus", "mode": "tap", "unit": 3, "parity": "O"},
     "points": [
         {"id": 1, "name": "V", "quantity": "voltage", "unit": "V", "resolution": 0.01, "order": 1,
          "period_ms": 1000, "deadband": 0.5, "alarm": {"low": 207.0, "high": 253.0},
          "read": {"table": "input", "address": 0, "type": "f64", "order": "BADC", "scale": 0.1}},
         {"id": 2, "name": "B", "quantity": "status", "unit": "1", "resolution": 1, "order": 0,
          "period_ms": 100, "event": True, "read": {"table": "discrete", "address": 9, "type": "bool"}},
     ]},
    {"format": 1, "name": "r", "device": {"kind": "relay", "model": "x"},
     "source": {"protocol": "mms", "ied": "IED"},
     "points": [
         {"id": 1, "name": "pos", "quantity": "position", "unit": "1", "resolution": 1, "order": 0,
          "report": "LD0/LLN0.RP.urcb01", "event": True,
          "read": {"ref": "LD0/XCBR1.Pos.stVal", "fc": "ST"}},
         {"id": 2, "name": "I", "quantity": "current", "unit": "A", "resolution": 0.1, "order": 1,
          "period_ms": 500, "read": {"ref": "LD0/MMXU1.A.phsA.cVal.mag.f", "fc": "MX"}},
     ]},
    {"format": 1, "name": "p", "device": {"kind": "pmu", "model": "x"},
     "source": {"protocol": "c37118", "idcode": 65534},
     "points": [
         {"id": 0, "name": "f", "quantity": "frequency", "unit": "Hz", "resolution": 0.001,
          "order": 1, "read": {"kind": "freq"}},
         {"id": 65535, "name": "a", "quantity": "angle", "unit": "deg", "resolution": 0.01,
          "order": 2, "alarm": {"high": 180}, "read": {"kind": "phasor-angle", "index": 3}},
     ]},
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=60),
    st.sampled_from(["modbus", "mms", "c37118", "ABCD", "f32", "bool", "coil", "V", "voltage",
                     "LD0/LLN0.BR.brcb01", "LD0/XCBR1.Pos.stVal", "ST", "phasor-mag", ""]),
    st.sampled_from([0, 1, 2, 10, 247, 248, 65535, 65536, -1, 0.0, 1e-30, 1e30, 0.5, 1e308]),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=12), inner, max_size=6)),
    max_leaves=30,
)


def _check(src):
    try:
        m = pointmap.load(src)
    except pointmap.PointMapError as e:
        assert str(e).startswith((e.path or "map") + ": ")
        return None
    again = pointmap.load(m.canonical_text())
    assert again.digest() == m.digest()
    assert again.canonical_text() == m.canonical_text()
    for p in m.points:
        assert m.point(p.id).name == p.name
        n = m.quantize(p, 1.5)
        assert isinstance(n, int)
        m.value(p, n)
    return m


@fuzz
@given(json_like)
def test_any_json_value(v):
    _check(v)


@fuzz
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_text(t):
    _check(t)


def _paths(v, prefix=()):
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, prefix + (i,))


@fuzz
@given(st.integers(0, len(BASES) - 1), st.data(), json_like,
       st.sampled_from(["replace", "remove", "add"]))
def test_mutated_valid_map(which, data, new, how):
    base = copy.deepcopy(BASES[which])
    assert _check(copy.deepcopy(base)) is not None
    paths = [p for p in _paths(base) if p]
    where = data.draw(st.sampled_from(paths))
    node: Any = base
    for k in where[:-1]:
        node = node[k]
    last = where[-1]
    if how == "replace":
        node[last] = new
    elif how == "remove":
        del node[last]
    elif isinstance(node, dict):
        node[data.draw(st.text(max_size=10))] = new
    else:
        node.insert(last, new)
    _check(base)


@fuzz
@given(st.integers(0, len(BASES) - 1), st.data())
def test_mutated_valid_text(which, data):
    text = json.dumps(BASES[which]).encode()
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 8)))
    junk = data.draw(st.binary(max_size=8) | st.sampled_from([b'"', b",", b"}", b"]", b"\\", b"1e9"]))
    _check(text[:i] + junk + text[j:])
    _check(text[:i])
