"""The device's code and the SDK make the same bytes from the same inputs, and read each other.

Two implementations of docs/wire-format.md: the firmware's own (``ln``:
its CBOR, COSE, SHA-512 and Ed25519) and the SDK's (cbor2, libsodium).
Checked three ways: hypothesis under CPython (the device code runs there
too), and one batch of cases inside the MicroPython unix port and the
32-bit WebAssembly port, whose transactions must also verify with pycose,
a third implementation nobody here wrote.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from _need import need
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode import micropython as mp
from lightnode import readings, wire
from lightnode.firmware.ln import ed25519 as dev_ed25519
from lightnode.firmware.ln import readings as dev_readings
from lightnode.firmware.ln import txn as dev_txn
from lightnode.firmware.ln import wire as spec
from lightnode.simulator import signals
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import CoseMessage

# RFC 8032 section 7.1 TEST 1: a published key, for tests only.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
DEVICE = bytes.fromhex("4c4e0001a5c3e701")
SEGMENT = "feeder-7"
T0 = 1_764_000_000_000_000


# ---------------------------------------------------------------- strategies


@st.composite
def series_strategy(draw: Any) -> readings.Series:
    n = draw(st.integers(1, 24))
    period = draw(st.sampled_from([20_000, 100_000, 1_000_000]))
    steps = draw(st.lists(st.integers(0, 3 * period), min_size=n - 1, max_size=n - 1))
    t = draw(st.integers(T0, T0 + 10**9))
    times = [t]
    for s in steps:
        t += s
        times.append(t)
    ids = draw(st.lists(st.integers(0, 2**16), min_size=1, max_size=4, unique=True))
    big = st.integers(-(2**40), 2**40)
    q = st.sampled_from([0, 0, 0, 1, 2, 4, 18])
    points = []
    for pid in ids:
        values = draw(st.lists(big, min_size=n, max_size=n))
        own = draw(st.none() | st.lists(q, min_size=n, max_size=n))
        points.append(readings.Point(pid, draw(st.integers(0, 2)), values, own))
    quality = draw(st.lists(q, min_size=n, max_size=n))
    gap_at = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=3))
    gaps = [(i, draw(st.integers(1, 50))) for i in sorted(gap_at)]
    return readings.Series(times, period, points, quality, gaps)


def _device_points(s: readings.Series) -> list[tuple]:
    return [
        (p.id, p.order, list(p.values)) + ((list(p.quality),) if p.quality is not None else ())
        for p in s.points
    ]


header = st.tuples(
    st.integers(0, 2**63 - 1),  # seq
    st.binary(min_size=32, max_size=32),  # prev
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3), st.integers(0, 2**32)),  # time
)


# ---------------------------------------------------------------- CPython, hypothesis


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header, st.lists(series_strategy(), min_size=1, max_size=2))
def test_readings_same_bytes_and_read_both_ways(head: tuple, body: list[readings.Series]) -> None:
    seq, prev, time = head
    key = dev_ed25519.SigningKey(SEED)
    dev_body = [dev_readings.series(s.times, s.period, _device_points(s), s.quality, s.gaps) for s in body]
    dev_data, dev_id = dev_txn.make(key, DEVICE, SEGMENT, seq, prev, time, spec.KIND_READINGS, dev_body)
    sdk_data, sdk_id = wire.Signer(SEED, DEVICE, SEGMENT).make(
        seq, prev, time, spec.KIND_READINGS, readings.encode_body(body)
    )
    assert dev_data == sdk_data
    assert dev_id == sdk_id
    # the SDK reads what the device made, the device reads what the SDK made
    tx = wire.verify(dev_data, key.public)
    assert (tx.seq, tx.prev, tuple(tx.time)) == (seq, prev, time)
    assert tx.readings() == body
    back = dev_txn.check(sdk_data, key.public)
    decoded = dev_readings.decode_body(back.body)
    assert [d["times"] for d in decoded] == [s.times for s in body]
    assert [[list(p[2]) for p in d["points"]] for d in decoded] == [[p.values for p in s.points] for s in body]


events = st.fixed_dictionaries(
    {0: st.integers(0, 255), 1: st.integers(0, 3), 5: st.integers(0, 2**63)},
    optional={2: st.none() | st.integers(0, 2**16), 3: st.none() | st.integers(-(2**40), 2**40),
              4: st.none() | st.integers(-(2**40), 2**40)},
)
heartbeats = st.fixed_dictionaries(
    {0: st.text(min_size=1, max_size=12), 1: st.integers(0, 2**20), 2: st.integers(0, 10**6),
     3: st.integers(0, 5), 4: st.integers(0, 3), 5: st.integers(0, 7)}
)


@settings(max_examples=60, deadline=None)
@given(header, st.one_of(events.map(lambda b: (spec.KIND_EVENT, b)),
                         heartbeats.map(lambda b: (spec.KIND_HEARTBEAT, b))))
def test_events_and_heartbeats_same_bytes(head: tuple, kind_body: tuple) -> None:
    seq, prev, time = head
    kind, body = kind_body
    key = dev_ed25519.SigningKey(SEED)
    dev_data, dev_id = dev_txn.make(key, DEVICE, SEGMENT, seq, prev, time, kind, body)
    sdk_data, sdk_id = wire.make(SEED, DEVICE, SEGMENT, seq, prev, time, kind, body)
    assert (dev_data, dev_id) == (sdk_data, sdk_id)
    assert wire.verify(dev_data, key.public).body == body
    assert dev_txn.check(sdk_data, key.public).body == body


# ---------------------------------------------------------------- inside MicroPython

_DEVICE_SCRIPT = """
import json, sys
from ln import ed25519, readings, txn
path = sys.argv[1] if len(sys.argv) > 1 else "/data/job.json"
with open(path) as f:
    job = json.load(f)
key = ed25519.SigningKey(bytes(job["seed"]))
dev = bytes(job["device"])
for c in job["cases"]:
    if c["kind"] == 1:
        body = [readings.series(s["times"], s["period"], [tuple(p) for p in s["points"]],
                                s["quality"], s["gaps"] or None) for s in c["body"]]
    else:
        body = {int(k): v for k, v in c["body"].items()}
    data, tx_id = txn.make(key, dev, job["segment"], c["seq"], bytes(c["prev"]),
                           c["time"], c["kind"], body)
    mp_result({"tx": data.hex(), "id": tx_id.hex()})
"""


def _cases() -> list[dict]:
    cases: list[dict] = []
    prev = bytes(32)
    for i in range(4):
        w = signals.pmu_window(seconds=1 + i, rate=50, seed=10 + i, t0_us=T0 + i * 10**7,
                               time_step=(7, 1000) if i == 2 else None)
        s = w.series()
        cases.append({"kind": spec.KIND_READINGS, "seq": i + 1, "prev": list(prev),
                      "time": [T0 + i * 10**7 + 5000, spec.TQ_NTP, 1500],
                      "body": [{"times": s.times, "period": s.period, "points": _device_points(s),
                                "quality": s.quality, "gaps": s.gaps}],
                      "sdk_body": readings.encode_body([s])})
        prev = hashlib.sha256(bytes([i])).digest()
    cases.append({"kind": spec.KIND_EVENT, "seq": 9, "prev": list(prev), "time": [T0, spec.TQ_GPS, 1],
                  "body": {"0": 3, "1": 2, "2": 1, "3": 49_650, "4": 49_800, "5": T0 - 20_000}})
    cases.append({"kind": spec.KIND_HEARTBEAT, "seq": 10, "prev": list(prev),
                  "time": [T0 + 1, spec.TQ_UNSYNCED, 0],
                  "body": {"0": "0.1.0", "1": 61_440, "2": 12, "3": 1, "4": 0, "5": 3}})
    return cases


def _sdk_expected(case: dict) -> tuple[bytes, bytes]:
    body = case.get("sdk_body") or {int(k): v for k, v in case["body"].items()}
    return wire.make(SEED, DEVICE, SEGMENT, case["seq"], bytes(case["prev"]), tuple(case["time"]),
                     case["kind"], body)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[dict]]:
    cases = _cases()
    folder = tmp_path_factory.mktemp("parity")
    path = folder / "job.json"
    path.write_text(json.dumps({"seed": list(SEED), "device": list(DEVICE), "segment": SEGMENT,
                                "cases": [{k: v for k, v in c.items() if k != "sdk_body"} for c in cases]}))
    return path, cases


def _need(what: Any) -> None:
    need(what)


@pytest.mark.parametrize("port", ["unix", "wasm"])
def test_inside_micropython_same_bytes_as_sdk_and_pycose_verifies(port: str, job: tuple) -> None:
    path, cases = job
    if port == "unix":
        _need(mp.find_micropython)
        run = mp.run_unix(code=_DEVICE_SCRIPT, args=(str(path),), heap=512).check()
    else:
        _need(mp.wasm_dir)
        _need(mp.find_node)
        run = mp.run_wasm(code=_DEVICE_SCRIPT, data=path.parent).check()
    assert len(run.results) == len(cases)
    public = dev_ed25519.public_key(SEED)
    key = OKPKey(crv=Ed25519, x=public)
    for case, got in zip(cases, run.results, strict=True):
        data, tx_id = _sdk_expected(case)
        assert bytes.fromhex(got["tx"]) == data, "seq %d differs on %s" % (case["seq"], port)
        assert bytes.fromhex(got["id"]) == tx_id
        tx = wire.verify(data, public)
        msg = CoseMessage.decode(tx.envelope)
        msg.key = key
        assert msg.verify_signature()
        assert hashlib.sha256(tx.payload).digest() == msg.payload
    step = wire.decode(bytes.fromhex(run.results[2]["tx"])).readings()[0]
    assert step.times[7] - step.times[6] == step.period + 1000
