"""Transactions as docs/wire-format.md defines them: made on the device, checked anywhere.

``make`` builds the deterministic payload map, signs it in the hash
envelope and returns the wire bytes ``[envelope, payload]`` with the
transaction id (SHA-256 of the envelope bytes). ``check`` takes wire
bytes and the device's public key and returns a ``Transaction``, or
raises a ``WireError`` (``CBORError``/``CoseError``/``TxError``) with the
spec's first reason. ``ln.readings`` encodes a readings body (``series``
and ``decimate`` here lead there).

    from ln import ed25519, readings, txn
    key = ed25519.SigningKey(seed)
    s = readings.series([t0, t0 + 20000, t0 + 41000], 20000, [(1, 1, [50012, 50013, 50011])])
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
maps, as the SDK's ``decode`` does; ``readings.decode_body`` checks one
field by field.
"""

import hashlib

from . import cbor, cose, wire
from .errors import TxError

_SEGMENT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_UINT_LIMIT = 1 << 64
_SEQ_LIMIT = 1 << 63


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
            if type(s) is not dict and not isinstance(s, cbor.Raw):
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


def series(times, period, points, quality=None, gaps=None):
    """``readings.series``: one readings series map (imported only when used)."""
    from . import readings

    return readings.series(times, period, points, quality, gaps)


def decimate(times, period, points, agg, quality=None, gaps=None):
    """``readings.decimate``: one decimated readings series map (imported only when used)."""
    from . import readings

    return readings.decimate(times, period, points, agg, quality, gaps)
