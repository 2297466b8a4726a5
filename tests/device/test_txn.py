# ln.txn: make/check round trip, every refusal reason of docs/wire-format.md from one
# targeted change, the size limit, and the readings encoder on hand-checked bytes.
import gc
import hashlib

import _vectors
from ln import cbor, cose, ed25519, readings, txn, wire
from ln.errors import CBORError, CoseError, TxError, WireError

try:
    from lightnode import nodewire  # CPython: the SDK's node-only wire facts
except ImportError:
    import nodewire  # MicroPython: tests/test_device_suites.py puts a copy on the path

PORTS = ("unix", "wasm")
# The limit tests hold 16 KB transactions and their parts at once; the
# device makes windows of about 4 KB (see the demo at the board's budget).
HEAP_KB = 256

h = _vectors.unhex
# RFC 8032 section 7.1 TEST 1 secret key: published, not a secret.
SEED = h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
KID = h("4c4e0001a5c3e701")
PREV = hashlib.sha256(b"transaction 1041").digest()
TIME = (1700000000000000, wire.TQ_NTP, 1500)
_KEY = []


def _key():
    if not _KEY:
        _KEY.append(ed25519.SigningKey(SEED))
    return _KEY[0]


def _body():
    return [readings.series([0, 20000, 41000], 20000, [(1, 1, [50012, 50013, 50011])])]


def _fields(**kw):
    p = {
        wire.P_VERSION: wire.FORMAT_VERSION,
        wire.P_DEVICE: KID,
        wire.P_SEGMENT: "feeder-7",
        wire.P_SEQ: 1042,
        wire.P_PREV: PREV,
        wire.P_TIME: list(TIME),
        wire.P_KIND: wire.KIND_READINGS,
        wire.P_BODY: _body(),
    }
    for k, v in kw.items():
        k = int(k[1:])
        if v is _DROP:
            del p[k]
        else:
            p[k] = v
    return p


_DROP = object()


def _build(payload=None, protected=None, unprotected=None, payload_hash=None, sig=None, tag=18):
    """Wire bytes from parts, unsigned unless a signature is given (checks before it need none)."""
    if payload is None:
        payload = cbor.dumps(_fields())
    elif not isinstance(payload, bytes):
        payload = cbor.dumps(payload)
    if protected is None:
        protected = cose.envelope_header(KID)
    elif not isinstance(protected, bytes):
        protected = cbor.dumps(protected)
    if payload_hash is None:
        payload_hash = hashlib.sha256(payload).digest()
    env = [protected, {} if unprotected is None else unprotected, payload_hash, sig or bytes(64)]
    return cbor.dumps([env if tag is None else cbor.Tag(tag, env), payload])


def _reason(data, check=False):
    try:
        if check:
            txn.check(data, _key().public)
        else:
            txn.decode(data)
    except WireError as e:
        assert isinstance(e, (CBORError, CoseError, TxError)) and e.reason in wire.REASONS
        return e.reason
    return None


def test_make_and_check():
    key = _key()
    data, tx_id = txn.make(key, KID, "feeder-7", 1042, PREV, TIME, wire.KIND_READINGS, _body())
    tx = txn.check(data, key.public)
    assert tx.id == tx_id == hashlib.sha256(tx.envelope).digest()
    assert (
        data[0] == 0x82 and tx.envelope[0] == 0xD2 and data[1 : 1 + len(tx.envelope)] == tx.envelope
    )
    assert tx.device == tx.kid == KID and tx.segment == "feeder-7" and tx.seq == 1042
    assert tx.prev == PREV and tx.time == TIME and tx.kind == wire.KIND_READINGS
    assert tx.body == _body() and tx.version == 1 and tx.alg == wire.ALG_EDDSA
    # the payload is the deterministic map, the envelope its hash envelope
    assert tx.payload == cbor.dumps(_fields())
    assert tx.payload_hash == hashlib.sha256(tx.payload).digest()
    assert tx.protected_bytes == cose.envelope_header(KID)
    assert data == b"\x82" + tx.envelope + cbor.dumps(tx.payload)
    # any COSE verifier checks the envelope alone with the device key
    msg = cose.verify1(tx.envelope, key.public)
    assert msg.payload == tx.payload_hash
    # Ed25519 is deterministic: the same inputs, the same bytes
    assert txn.make(key, KID, "feeder-7", 1042, PREV, TIME, 1, _body()) == (data, tx_id)
    assert _reason(data, check=True) is None


def test_make_every_kind():
    key = _key()
    bodies = {
        wire.KIND_EVENT: {0: 7, 1: 3, 2: None, 3: -5, 5: TIME[0]},
        nodewire.KIND_OPERATOR: {"who": "op"},
        wire.KIND_HEARTBEAT: {0: "0.1.0", 1: 50000, 2: 3, 3: 1, 4: 1, 5: 0},
        nodewire.KIND_REGISTRATION: {},
        nodewire.KIND_SUMMARY: {0: [1, 2]},
    }
    for kind, body in bodies.items():
        data, _ = txn.make(key, KID, "feeder-7", kind, PREV, TIME, kind, body)
        tx = txn.decode(data)
        assert tx.kind == kind and tx.body == body


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        assert not isinstance(e, WireError)
        return
    raise AssertionError("%s not raised" % exc.__name__)


def test_make_refuses_what_the_spec_cannot_carry():
    key = _key()

    def make(**kw):
        a = dict(
            device_id=KID, segment="feeder-7", seq=1, prev=PREV, time=TIME, kind=1, body=_body()
        )
        a.update(kw)
        return txn.make(
            key, a["device_id"], a["segment"], a["seq"], a["prev"], a["time"], a["kind"], a["body"]
        )

    for kw in (
        {"device_id": b""},
        {"device_id": bytes(33)},
        {"segment": ""},
        {"segment": "Feeder"},
        {"segment": "a" * 33},
        {"segment": "feeder_7"},
        {"seq": -1},
        {"seq": 1 << 63},
        {"prev": bytes(31)},
        {"time": (1, 4, 0)},
        {"time": (1, 1)},
        {"time": (-1, 1, 0)},
        {"kind": 0},
        {"kind": 7},
        {"body": []},
        {"body": {}},
        {"body": [[]]},
    ):
        try:
            make(**kw)
        except (ValueError, TypeError) as e:
            assert not isinstance(e, WireError), kw
            continue
        raise AssertionError("made with %r" % (kw,))
    assert make(device_id=bytes(32), segment="a" * 32, seq=(1 << 63) - 1)[0]


def test_size_limit():
    key = _key()
    # a summary body of one byte string, sized to land on the limit exactly
    data, _ = txn.make(key, KID, "s", 0, PREV, TIME, nodewire.KIND_SUMMARY, {0: b""})
    room = wire.MAX_TX_BYTES - len(data)
    # the string's head grows from 1 to 3 bytes, the payload bstr's from 2 to 3
    fill = room - 3
    # one byte more is not made (checked before signing). Each 16 KB make
    # needs a free 16 KB run: on the 64-bit unix port the heap is too
    # fragmented for several alive at once, hence the dels.
    _raises(
        ValueError, txn.make, key, KID, "s", 0, PREV, TIME, nodewire.KIND_SUMMARY, {0: bytes(fill + 1)}
    )
    gc.collect()
    data, _ = txn.make(key, KID, "s", 0, PREV, TIME, nodewire.KIND_SUMMARY, {0: bytes(fill)})
    assert len(data) == wire.MAX_TX_BYTES
    tx = txn.check(data, key.public)
    assert len(tx.body[0]) == fill
    del tx
    gc.collect()
    # over the limit on the wire: refused before anything else
    assert _reason(data + b"\x00") == wire.R_OVERSIZED


def test_refusal_reasons():
    good = cbor.dumps(_fields())
    env_hdr = {
        wire.H_ALG: wire.ALG_EDDSA,
        wire.H_KID: KID,
        258: wire.ALG_SHA256,
        259: wire.CTY_CBOR,
    }

    def hdr(**kw):
        d = dict(env_hdr)
        for k, v in kw.items():
            k = int(k[1:])
            if v is _DROP:
                del d[k]
            else:
                d[k] = v
        return d

    base = _build()
    assert _reason(base) is None
    cases = (
        # the scan of the whole bytes
        (bytes(wire.MAX_TX_BYTES + 1), wire.R_OVERSIZED),
        (base[:-1], wire.R_MALFORMED),
        (base + b"\x00", wire.R_MALFORMED),
        (b"\x83" + base[1:] + b"\xf9\x3c\x00", wire.R_UNSUPPORTED),
        (b"\x98\x02" + base[1:], wire.R_NON_CANONICAL),
        (cbor.dumps([cbor.Tag(18, [cbor.Tag(24, b""), {}, b"", b""]), b""]), wire.R_UNSUPPORTED),
        # structure
        (cbor.dumps([cbor.loads(base, tag_depth=1)[0]]), wire.R_STRUCTURE),
        (b"\x83" + base[1:] + b"\x00", wire.R_STRUCTURE),
        (cbor.dumps({0: 1}), wire.R_STRUCTURE),
        (cbor.dumps([cbor.loads(base, tag_depth=1)[0], "payload"]), wire.R_STRUCTURE),
        (_build(payload_hash=bytes(31)), wire.R_STRUCTURE),
        (_build(sig=bytes(63)), wire.R_STRUCTURE),
        (_build(sig=bytes(114)), wire.R_STRUCTURE),
        (_build(unprotected=[]), wire.R_STRUCTURE),
        # tag
        (_build(tag=998), wire.R_TAG),
        (_build(tag=None), wire.R_TAG),
        # alg, then the protected header's exact labels
        (_build(protected=hdr(_1=nodewire.ALG_ED448)), wire.R_ALG),
        (_build(protected=hdr(_1=-7)), wire.R_ALG),
        (_build(protected=hdr(_1="EdDSA")), wire.R_ALG),
        (_build(protected=hdr(_1=_DROP)), wire.R_PROTECTED),
        (_build(protected=[1, -8]), wire.R_PROTECTED),
        (_build(protected=hdr(_3=60)), wire.R_PROTECTED),
        (_build(protected=hdr(_259=_DROP)), wire.R_PROTECTED),
        (_build(protected=hdr(_258=-43)), wire.R_PROTECTED),
        (_build(protected=hdr(_259=50)), wire.R_PROTECTED),
        (_build(protected=hdr(_4=_DROP)), wire.R_PROTECTED),
        (_build(protected=hdr(_4=bytes(33))), wire.R_PROTECTED),
        (_build(protected=hdr(_4=b"")), wire.R_PROTECTED),
        (_build(protected=hdr(_4="kid")), wire.R_PROTECTED),
        (_build(protected=hdr(_260="x")), wire.R_PROTECTED),
        (_build(protected=b"\xa4\x01\x27"), wire.R_MALFORMED),  # its own scan
        (_build(protected=b""), wire.R_MALFORMED),
        (_build(protected=cose.envelope_header(KID)[:-2] + b"\x19\x00\x3c"), wire.R_NON_CANONICAL),
        # the rest in the table's order
        (_build(unprotected={4: KID}), wire.R_UNPROTECTED),
        (_build(payload_hash=hashlib.sha256(good[:-1]).digest()), wire.R_PAYLOAD_HASH),
        (_build(payload=good[:-1]), wire.R_MALFORMED),  # the payload's own scan
        (_build(payload=good + b"\x00"), wire.R_MALFORMED),
        (_build(payload=b"\xa1\x00\xf9\x3c\x00"), wire.R_UNSUPPORTED),
        (_build(payload=b"\xa2\x01\x00\x00\x00"), wire.R_NON_CANONICAL),
        (_build(payload=_fields(_8=0)), wire.R_PAYLOAD),
        (_build(payload=_fields(_7=_DROP)), wire.R_PAYLOAD),
        (_build(payload=[1]), wire.R_PAYLOAD),
        (_build(payload=_fields(_0="1")), wire.R_PAYLOAD),
        (_build(payload=_fields(_1=b"")), wire.R_PAYLOAD),
        (_build(payload=_fields(_1=bytes(33))), wire.R_PAYLOAD),
        (_build(payload=_fields(_2="Feeder-7")), wire.R_PAYLOAD),
        (_build(payload=_fields(_2="")), wire.R_PAYLOAD),
        (_build(payload=_fields(_2="f" * 33)), wire.R_PAYLOAD),
        (_build(payload=_fields(_3=1 << 63)), wire.R_PAYLOAD),
        (_build(payload=_fields(_3=-1)), wire.R_PAYLOAD),
        (_build(payload=_fields(_4=bytes(31))), wire.R_PAYLOAD),
        (_build(payload=_fields(_5=[1, 1])), wire.R_PAYLOAD),
        (_build(payload=_fields(_5=[1, 4, 0])), wire.R_PAYLOAD),
        (_build(payload=_fields(_5=[1, 1, -1])), wire.R_PAYLOAD),
        (_build(payload=_fields(_6=7)), wire.R_PAYLOAD),
        (_build(payload=_fields(_7=[])), wire.R_PAYLOAD),
        (_build(payload=_fields(_7=[[]])), wire.R_PAYLOAD),
        (_build(payload=_fields(_6=2, _7={0: 1, 5: 0})), wire.R_PAYLOAD),  # no severity
        (_build(payload=_fields(_6=2, _7={0: 1, 1: 4, 5: 0})), wire.R_PAYLOAD),
        (_build(payload=_fields(_6=2, _7={0: 1, 1: 0, 5: 0, 6: 0})), wire.R_PAYLOAD),
        (_build(payload=_fields(_6=2, _7={0: 1, 1: 0, 2: -1, 5: 0})), wire.R_PAYLOAD),
        (_build(payload=_fields(_6=4, _7={0: "1", 1: 0, 2: 0, 3: 0, 4: 0})), wire.R_PAYLOAD),
        (_build(payload=_fields(_6=4, _7={0: "1", 1: 0, 2: 0, 3: 0, 4: 9, 5: 0})), wire.R_PAYLOAD),
        (_build(payload=_fields(_6=3, _7=[])), wire.R_PAYLOAD),
        (_build(payload=_fields(_0=2)), wire.R_VERSION),
        (_build(payload=_fields(_1=b"\x02")), wire.R_KID),
    )
    for data, reason in cases:
        got = _reason(data)
        assert got == reason, (reason, got, data[:40])


def test_first_reason_wins():
    # two faults at once: the earlier in the table's order is the one reported
    two = (
        (_build(payload=_fields(_0=2, _1=b"\x02")), wire.R_VERSION),
        (_build(payload=_fields(_0=2, _2="X")), wire.R_PAYLOAD),
        (_build(payload=_fields(_1=b"\x02", _2="X")), wire.R_PAYLOAD),
        (_build(payload=b"\xf9\x3c\x00", payload_hash=bytes(32)), wire.R_PAYLOAD_HASH),
        (_build(unprotected={1: 1}, payload_hash=bytes(32)), wire.R_UNPROTECTED),
        (_build(protected={1: -8}, unprotected={1: 1}), wire.R_PROTECTED),
        (_build(protected={1: -7}, tag=17), wire.R_TAG),
        (_build(tag=17, sig=bytes(1)), wire.R_STRUCTURE),
        (_build(protected=b"\xf9\x3c\x00", tag=17), wire.R_TAG),
    )
    for data, reason in two:
        assert _reason(data) == reason, (reason, _reason(data))


def test_signature_is_checked_last():
    key = _key()
    data, _ = txn.make(key, KID, "feeder-7", 1042, PREV, TIME, wire.KIND_READINGS, _body())
    top = cbor.loads(data, tag_depth=1)
    sig = top[0].value[3]
    top[0].value[3] = sig[:5] + bytes([sig[5] ^ 0x40]) + sig[6:]
    bad = cbor.dumps(top)
    assert _reason(bad) is None  # decode does not look at the signature
    assert _reason(bad, check=True) == wire.R_SIGNATURE
    # another device's key
    other = ed25519.SigningKey(bytes(32))
    e = None
    try:
        txn.check(data, other.public)
    except CoseError as x:
        e = x
    assert e is not None and e.reason == wire.R_SIGNATURE
    # alg -19 names the same algorithm, but it is inside the signed bytes
    top = cbor.loads(data, tag_depth=1)
    top[0].value[0] = cbor.dumps(
        {1: wire.ALG_ED25519, 4: KID, 258: wire.ALG_SHA256, 259: wire.CTY_CBOR}
    )
    assert _reason(cbor.dumps(top), check=True) == wire.R_SIGNATURE
    # a transaction signed with alg -19 from the start is accepted
    pb = cbor.dumps({1: wire.ALG_ED25519, 4: KID, 258: wire.ALG_SHA256, 259: wire.CTY_CBOR})
    data19, _ = txn.make(key, KID, "feeder-7", 1042, PREV, TIME, 1, _body(), protected_bytes=pb)
    assert txn.check(data19, key.public).alg == wire.ALG_ED25519
    # an Ed448 key: unsupported-alg, once everything else has passed
    assert _reason_key(data, bytes(57)) == wire.R_ALG


def _reason_key(data, public):
    try:
        txn.check(data, public)
    except WireError as e:
        return e.reason
    return None


# ---------------------------------------------------------------- readings


def test_series_bytes_by_hand():
    s = readings.series([0, 20000, 41000], 20000, [(1, 1, [50012, 50013, 50011])])
    assert s == {0: 0, 1: 20000, 2: [0, 1000], 3: [[1, 1, [50012, 1, -2]]], 4: [[3, 0]]}
    assert cbor.dumps(s) == h(
        "a5"
        "00"
        "00"  # t0 0
        "01"
        "194e20"  # period 20000
        "02"
        "82"
        "00"
        "1903e8"  # dt: on time, then 1 ms late
        "03"
        "81"
        "83"
        "01"
        "01"
        "83"
        "19c35c"
        "01"
        "21"  # point 1, order 1: 50012, +1, -2
        "04"
        "81"
        "82"
        "03"
        "00"  # quality: 3 good
    )


def test_delta_orders():
    angles = [100, 150, 210, 280, 340]
    assert readings.delta(angles, 0) == angles
    assert readings.delta(angles, 1) == [100, 50, 60, 70, 60]
    assert readings.delta(angles, 2) == [100, -50, 10, 10, -10]
    for order in (0, 1, 2):
        assert readings.undelta(readings.delta(angles, order), order) == angles
    assert readings.delta([], 2) == [] and readings.delta([7], 2) == [7]
    s = readings.series([0, 20000, 40000, 60000, 80000], 20000, [(9, 2, angles)])
    assert s[3] == [[9, 2, [100, -50, 10, 10, -10]]]
    assert cbor.dumps(s[3]) == h("8183090285186438310a0a29")


def test_quality_gaps_and_point_quality():
    q = [0, 0, 16, 16, 0]
    pq = [1, 1, 1, 0, 0]
    s = readings.series(
        [0, 20000, 40000, 60000, 100000], 20000, [(1, 0, [5, 5, 5, 5, 5], pq)], q, [(4, 1)]
    )
    assert s[4] == [[2, 0], [2, 16], [1, 0]]
    assert s[3] == [[1, 0, [5, 5, 5, 5, 5], [[3, 1], [2, 0]]]]
    assert s[5] == [[4, 1]] and s[2] == [0, 0, 0, 20000]
    assert readings.quality_runs([]) == [] and readings.quality_runs([2]) == [[1, 2]]
    assert cbor.dumps(s).endswith(h("0581820401"))
    d = readings.decode_body([s])[0]
    assert d["times"] == [0, 20000, 40000, 60000, 100000] and d["quality"] == q
    assert d["gaps"] == [(4, 1)] and d["points"] == [(1, 0, [5] * 5, pq, None, None)]


def test_one_ms_step_visible_in_dt():
    period = 20000
    times = [1700000000000000 + i * period for i in range(250)]
    on_time = readings.series(times, period, [(1, 1, [50000] * 250)])
    assert on_time[2] == [0] * 249
    # an on-time stream is all zeros, one byte each
    assert cbor.dumps(on_time[2]) == h("98f9") + bytes(249)
    late = times[:100] + [t + 1000 for t in times[100:]]
    s = readings.series(late, period, [(1, 1, [50000] * 250)])
    assert s[2][99] == 1000 and sum(1 for x in s[2] if x) == 1
    assert readings.decode_body([s])[0]["times"] == late


def test_decimation():
    times = [0, 20000, 40000, 60000, 80000]
    v = [10, 13, 7, 8, -3]
    neg = [-1, -2, -4, -4, 0]
    d = readings.decimate(
        times,
        20000,
        [(1, 1, v), (2, 0, neg, [0, 1, 0, 0, 0])],
        2,
        [0, 0, 0, 32, 0],
        [(1, 2), (3, 1), (4, 5)],
    )
    # groups [0, 1], [2, 3], [4]: min, max, floor of the mean
    assert d[6] == 2 and d[1] == 40000 and d[0] == 0 and d[2] == [0, 0]
    mins, maxs, means = [10, 7, -3], [13, 8, -3], [11, 7, -3]
    assert d[3][0] == [
        1,
        1,
        readings.delta(mins, 1),
        readings.delta(maxs, 1),
        readings.delta(means, 1),
    ]
    # floor, not truncation: -3 // 2 == -2, -8 // 2 == -4
    assert d[3][1] == [2, 0, [-2, -4, 0], [-1, -4, 0], [-2, -4, 0], [[1, 1], [2, 0]]]
    assert d[4] == [[1, 0], [1, 32], [1, 0]]
    assert d[5] == [[0, 2], [1, 1], [2, 5]]
    back = readings.decode_body([d])[0]
    assert back["agg"] == 2 and back["times"] == [0, 40000, 80000]
    assert back["points"][0] == (1, 1, means, None, mins, maxs)
    # agg divides n: every sample aggregates exactly agg
    d = readings.decimate(times[:4], 20000, [(1, 0, v[:4])], 4)
    assert d[3] == [[1, 0, [7], [13], [9]]] and d[4] == [[1, 0]] and d[2] == []
    _raises(ValueError, readings.decimate, times, 20000, [(1, 0, v)], 0)


def test_series_refuses_what_the_spec_cannot_carry():
    t = [0, 20000]
    for args in (
        ([], 20000, [(1, 0, [])]),
        (t, 20000, []),
        (t, -1, [(1, 0, [1, 2])]),
        ([-1, 0], 20000, [(1, 0, [1, 2])]),
        (t, 20000, [(1, 3, [1, 2])]),
        (t, 20000, [(1, 0, [1])]),
        (t, 20000, [(1, 0, [1, 2]), (1, 0, [1, 2])]),
        (t, 20000, [(1, 0, [1, 2], [0, 64])]),
        (t, 20000, [(1, 0, [1, 2.5])]),
        (t, 20000, [(1, 2, [1 << 63, -(1 << 63)])]),  # second difference past 64 bits
        (t, 20000, [(-1, 0, [1, 2])]),
    ):
        try:
            readings.series(*args)
        except (ValueError, TypeError) as e:
            assert not isinstance(e, WireError)
            continue
        raise AssertionError("series made from %r" % (args,))
    for q, gaps in (
        ([0, 64], None),
        ([0], None),
        (None, [(2, 1)]),
        (None, [(1, 0)]),
        (None, [(1, 1), (1, 1)]),
        (None, [(1, 1, 1)]),
    ):
        try:
            readings.series(t, 20000, [(1, 0, [1, 2])], q, gaps)
        except (ValueError, TypeError):
            continue
        raise AssertionError("series made with %r %r" % (q, gaps))


def test_decode_readings_refusals():
    good = readings.series([0, 20000, 40000], 20000, [(1, 1, [1, 2, 3])])
    assert readings.decode_body([good])[0]["points"][0][2] == [1, 2, 3]

    def with_(**kw):
        m = dict(good)
        for k, v in kw.items():
            k = int(k[1:])
            if v is _DROP:
                del m[k]
            else:
                m[k] = v
        return [m]

    for body in (
        [],
        {},
        [[]],
        with_(_7=0),
        with_(_0=_DROP),
        with_(_0=-1),
        with_(_2=[0, "x"]),
        with_(_3=[]),
        with_(_3=[[1, 1, [1, 2]]]),
        with_(_3=[[1, 3, [1, 2, 3]]]),
        with_(_3=[[1, 1, [1, 2, 3]], [1, 1, [1, 2, 3]]]),
        with_(_3=[[1, 1, [1, 2, 3], [[3, 64]]]]),
        with_(_4=[[2, 0]]),
        with_(_4=[[4, 0]]),
        with_(_4=[[1, 0], [2, 0]]),
        with_(_4=[[0, 0], [3, 0]]),
        with_(_5=[]),
        with_(_5=[[3, 1]]),
        with_(_5=[[1, 0]]),
        with_(_5=[[1, 1], [1, 1]]),
        with_(_6=0),
        with_(_6=2),  # decimated needs mins, maxs, means
        with_(_6=2, _3=[[1, 0, [2, 2, 2], [1, 1, 1], [1, 1, 1]]]),  # min > mean
        with_(_2=[-20001]),
    ):
        try:
            readings.decode_body(body)
        except TxError as e:
            assert e.reason == wire.R_PAYLOAD, (body, e)
            continue
        raise AssertionError("accepted %r" % (body,))
