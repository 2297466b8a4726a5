"""Transactions as docs/wire-format.md defines them: made on the device, checked anywhere.

``make`` builds the deterministic payload map, signs it in the hash
envelope and returns the wire bytes ``[envelope, payload]`` with the
transaction id (SHA-256 of the envelope bytes). ``check`` takes wire
bytes and the device's public key and returns a ``Transaction``, or
raises a ``WireError`` (``CBORError``/``CoseError``/``TxError``) with the
spec's first reason. ``series`` and ``decimate`` encode a readings body.

    from ln import ed25519, txn
    key = ed25519.SigningKey(seed)
    s = txn.series([t0, t0 + 20000, t0 + 41000], 20000, [(1, 1, [50012, 50013, 50011])])
    data, tx_id = txn.make(key, b"\\x4c\\x4e\\x00\\x01", "feeder-7", 1042, prev,
                           (now_us, wire.TQ_NTP, 1500), wire.KIND_READINGS, [s])
    tx = txn.check(data, key.public)        # tx.seq == 1042, tx.id == tx_id

The order of ``check`` (the SDK's ``lightnode.wire`` follows the same):
the CBOR scan of the whole bytes; structure (``[envelope, payload]``, the
envelope's four parts and their types, a 32-byte hash and a 64-byte
signature); the tag; the protected header's own scan, then its alg, then
its exact labels; the unprotected header; the payload hash; the payload's
own scan; its keys, types and ranges; its version; kid against device id;
the public key (an Ed448 key is unsupported-alg) and the signature.

A readings body is checked here only as an array of one or more series
maps, as the SDK's ``decode`` does; ``decode_readings`` checks one field
by field.
"""

import hashlib

from . import cbor, cose, wire
from .errors import TxError

_SEGMENT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_UINT_LIMIT = 1 << 64
_SEQ_LIMIT = 1 << 63
_INT_MIN = -(1 << 64)
_INT_MAX = (1 << 64) - 1


class Transaction:
    """A checked transaction: its parts as sent and the payload's fields."""

    def __init__(self, raw, envelope, protected_bytes, header, payload, payload_hash, signature, p):
        self.raw = raw  # the wire bytes [envelope, payload]
        self.envelope = envelope  # from the tag byte to the signature's last byte
        self.id = hashlib.sha256(envelope).digest()
        self.protected_bytes = protected_bytes
        self.header = header
        self.alg = header[wire.H_ALG]
        self.kid = header[wire.H_KID]
        self.payload = payload
        self.payload_hash = payload_hash
        self.signature = signature
        self.version = p[wire.P_VERSION]
        self.device = p[wire.P_DEVICE]
        self.segment = p[wire.P_SEGMENT]
        self.seq = p[wire.P_SEQ]
        self.prev = p[wire.P_PREV]
        self.time = tuple(p[wire.P_TIME])  # (us since 1970, quality, uncertainty us)
        self.kind = p[wire.P_KIND]
        self.body = p[wire.P_BODY]

    def __repr__(self):
        return "Transaction(device=%s, segment=%r, seq=%d, kind=%s)" % (
            self.device.hex(),
            self.segment,
            self.seq,
            wire.KIND_NAMES.get(self.kind, str(self.kind)),
        )


# ---------------------------------------------------------------- payload fields


def _is_uint(x, limit=_UINT_LIMIT):
    return type(x) is int and 0 <= x < limit


def _is_int_or_nil(x):
    return x is None or type(x) is int


def _segment_ok(seg):
    if type(seg) is not str or not 1 <= len(seg) <= wire.MAX_SEGMENT:
        return False
    for c in seg:
        if c not in _SEGMENT_CHARS:
            return False
    return True


def _event_fault(body):
    for k in body:
        if type(k) is not int or not wire.E_TYPE <= k <= wire.E_TIME:
            return "event key %r" % (k,)
    for k in (wire.E_TYPE, wire.E_SEVERITY, wire.E_TIME):
        if k not in body:
            return "event without key %d" % k
    if not _is_uint(body[wire.E_TYPE]):
        return "event type not a uint"
    if not _is_uint(body[wire.E_SEVERITY], 4):
        return "event severity not 0..3"
    point = body.get(wire.E_POINT)
    if not (point is None or _is_uint(point)):
        return "event point not a uint or null"
    if not (_is_int_or_nil(body.get(wire.E_VALUE)) and _is_int_or_nil(body.get(wire.E_LIMIT))):
        return "event value or limit not an integer or null"
    if not _is_uint(body[wire.E_TIME]):
        return "event source time not a uint"
    return None


_HB_KEYS = (
    wire.HB_FIRMWARE,
    wire.HB_FREE_HEAP,
    wire.HB_JOURNAL,
    wire.HB_LINK,
    wire.HB_TIME_QUALITY,
    wire.HB_RESET_CAUSE,
)


def _heartbeat_fault(body):
    if len(body) != len(_HB_KEYS):
        return "heartbeat keys %r, expected 0..5" % (sorted(body, key=str),)
    for k in _HB_KEYS:
        if k not in body:
            return "heartbeat keys %r, expected 0..5" % (sorted(body, key=str),)
    if type(body[wire.HB_FIRMWARE]) is not str:
        return "heartbeat firmware version not text"
    for k in _HB_KEYS[1:]:
        if not _is_uint(body[k]):
            return "heartbeat counters not uints"
    if body[wire.HB_TIME_QUALITY] not in wire.TQ_NAMES:
        return "heartbeat time quality %r" % (body[wire.HB_TIME_QUALITY],)
    return None


def _body_fault(kind, body):
    if kind == wire.KIND_READINGS:
        if type(body) is not list or not body:
            return "readings body not an array of one or more series"
        for s in body:
            if type(s) is not dict:
                return "readings series not a map"
        return None
    if type(body) is not dict:
        return "%s body not a map" % wire.KIND_NAMES[kind]
    if kind == wire.KIND_EVENT:
        return _event_fault(body)
    if kind == wire.KIND_HEARTBEAT:
        return _heartbeat_fault(body)
    return None  # operator action, registration, summary: a map, keys to come


def payload_fault(p):
    """Why a decoded payload map breaks the spec's keys, types or ranges; None if it does not."""
    if type(p) is not dict:
        return "payload not a map"
    if len(p) != len(wire.PAYLOAD_KEYS):
        return "payload keys %r, expected 0..7" % (sorted(p, key=str),)
    for k in wire.PAYLOAD_KEYS:
        if k not in p:
            return "payload keys %r, expected 0..7" % (sorted(p, key=str),)
    if not _is_uint(p[wire.P_VERSION]):
        return "version not a uint"
    dev = p[wire.P_DEVICE]
    if type(dev) is not bytes or not 1 <= len(dev) <= wire.MAX_DEVICE_ID:
        return "device id not 1-%d bytes" % wire.MAX_DEVICE_ID
    if not _segment_ok(p[wire.P_SEGMENT]):
        return "segment not 1-%d characters of a-z0-9-" % wire.MAX_SEGMENT
    if not _is_uint(p[wire.P_SEQ], _SEQ_LIMIT):
        return "seq not a uint below 2^63"
    prev = p[wire.P_PREV]
    if type(prev) is not bytes or len(prev) != wire.HASH_BYTES:
        return "prev not %d bytes" % wire.HASH_BYTES
    t = p[wire.P_TIME]
    if type(t) is not list or len(t) != 3:
        return "time not [uint, uint, uint]"
    for x in t:
        if not _is_uint(x):
            return "time not [uint, uint, uint]"
    if t[1] not in wire.TQ_NAMES:
        return "time quality %d" % t[1]
    kind = p[wire.P_KIND]
    if not _is_uint(kind) or kind not in wire.KIND_NAMES:
        return "kind %r" % (kind,)
    return _body_fault(kind, p[wire.P_BODY])


# ---------------------------------------------------------------- making


def _bytes(x):
    return bytes(x) if isinstance(x, (bytearray, memoryview)) else x


def encode_payload(device_id, segment, seq, prev, time, kind, body, version=wire.FORMAT_VERSION):
    """The deterministic payload map; ValueError/TypeError if a field is outside the spec."""
    p = {
        wire.P_VERSION: version,
        wire.P_DEVICE: _bytes(device_id),
        wire.P_SEGMENT: segment,
        wire.P_SEQ: seq,
        wire.P_PREV: _bytes(prev),
        wire.P_TIME: list(time) if isinstance(time, (tuple, list)) else time,
        wire.P_KIND: kind,
        wire.P_BODY: body,
    }
    fault = payload_fault(p)
    if fault:
        raise ValueError(fault)
    return cbor.dumps(p)


def _bstr_head(n):
    # a byte string's head is the unsigned integer's with major type 2
    b = cbor.dumps(n)
    return bytes([0x40 | b[0]]) + b[1:]


def make(key, device_id, segment, seq, prev, time, kind, body, protected_bytes=None):
    """``(tx_bytes, tx_id)``: one signed wire transaction and its id.

    ``key`` is an ``ed25519.SigningKey``; ``time`` is ``(us since 1970,
    quality, uncertainty us)``. ValueError/TypeError if a field breaks the
    spec or the transaction would be over ``wire.MAX_TX_BYTES`` (checked
    before signing). ``protected_bytes`` may be given precomputed
    (``cose.envelope_header(device_id)``).
    """
    pb = cose.envelope_header(device_id) if protected_bytes is None else protected_bytes
    payload = encode_payload(device_id, segment, seq, prev, time, kind, body)
    env_size = 2 + len(cbor.dumps(pb)) + 1 + 2 + wire.HASH_BYTES + 2 + wire.ED25519_SIG_BYTES
    size = 1 + env_size + len(_bstr_head(len(payload))) + len(payload)
    if size > wire.MAX_TX_BYTES:
        raise ValueError("transaction of %d bytes, limit %d" % (size, wire.MAX_TX_BYTES))
    env = cose.sign_envelope(payload, key, device_id, pb)
    data = b"\x82" + env + _bstr_head(len(payload)) + payload
    return data, hashlib.sha256(env).digest()


# ---------------------------------------------------------------- checking


def decode(data):
    """A wire transaction checked against the spec in its order, all but the signature.

    Raises ``CBORError``, ``CoseError`` or ``TxError`` with the first reason.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise TypeError("data: bytes expected, not %s" % type(data).__name__)
    top, spans = cbor.loads(data, tag_depth=1, spans=True)
    if type(top) is not list or len(top) != 2:
        raise TxError(wire.R_STRUCTURE, "not an array [envelope, payload]")
    env_item, payload = top
    if type(payload) is not bytes:
        raise TxError(wire.R_STRUCTURE, "payload not a byte string")
    tag, pb, unprotected, payload_hash, signature = cose.parts(env_item, False)
    if len(payload_hash) != wire.HASH_BYTES:
        raise TxError(wire.R_STRUCTURE, "payload hash not %d bytes" % wire.HASH_BYTES)
    if len(signature) != wire.ED25519_SIG_BYTES:
        raise TxError(
            wire.R_STRUCTURE,
            "signature of %d bytes, not %d" % (len(signature), wire.ED25519_SIG_BYTES),
        )
    cose.check_tag(tag)
    header = cbor.loads(pb)
    cose.check_alg(header)
    cose.check_envelope_header(header, unprotected)
    if hashlib.sha256(payload).digest() != payload_hash:
        raise TxError(wire.R_PAYLOAD_HASH, "SHA-256 of the payload differs from the envelope's")
    p = cbor.loads(payload)
    fault = payload_fault(p)
    if fault:
        raise TxError(wire.R_PAYLOAD, fault)
    if p[wire.P_VERSION] != wire.FORMAT_VERSION:
        raise TxError(wire.R_VERSION, "version %d" % p[wire.P_VERSION])
    if header[wire.H_KID] != p[wire.P_DEVICE]:
        raise TxError(
            wire.R_KID, "kid %s, device %s" % (header[wire.H_KID].hex(), p[wire.P_DEVICE].hex())
        )
    s, e = spans[0]
    return Transaction(data, data[s:e], pb, header, payload, payload_hash, signature, p)


def verify(tx, public_key):
    """Raise ``CoseError`` unless the device with ``public_key`` signed ``tx`` (a ``Transaction``)."""
    key = cose.check_key(public_key)
    cose.check_signature(key, cose.sig_structure(tx.protected_bytes, tx.payload_hash), tx.signature)


def check(data, public_key):
    """``decode(data)`` and its signature with the device's ``public_key``: the ``Transaction``."""
    tx = decode(data)
    verify(tx, public_key)
    return tx


# ---------------------------------------------------------------- readings body


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
    if not isinstance(xs, (list, tuple)) or len(xs) != n:
        raise TypeError("%s must be a list of %d integers" % (name, n))
    for x in xs:
        if type(x) is not int:
            raise TypeError("%s must be a list of %d integers" % (name, n))


def _quality_bits(name, q):
    for x in q:
        if x < 0 or x & ~wire.Q_ALL:
            raise ValueError("%s: quality %d has bits outside %d" % (name, x, wire.Q_ALL))


def _check_raw(times, period, points, quality, gaps):
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
        if not 0 <= t <= _INT_MAX:
            raise ValueError("times must be unsigned integers (us since 1970)")
    if not quality:
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


# ---------------------------------------------------------------- readings, checked


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


def decode_readings(body):
    """A readings body (kind 1) checked field by field: a list of ``decode_series`` dicts."""
    lst = _list(body, "body")
    if not lst:
        raise _bad("body: no series")
    return [decode_series(s) for s in lst]
