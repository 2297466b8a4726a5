"""The SDK's side of the wire format (docs/wire-format.md): decode, verify, make.

``decode`` takes the bytes of a transaction as they came off the wire and
either returns a ``Transaction`` or raises ``DecodeError``/``VerifyError``
with one reason from ``lightnode.firmware.ln.wire``. Nothing else comes
out of it. ``Transaction.verify`` checks the Ed25519 signature with the
device's public key. ``Signer`` makes transactions the way a device does
(for simulated fleets and tests), byte for byte what the spec defines.

    >>> from lightnode import wire
    >>> s = wire.Signer(bytes(32), device_id=b"\\x01" * 8, segment="feeder-7")
    >>> data, tx_id = s.make(seq=0, prev=bytes(32), time=(1_700_000_000_000_000, 1, 500),
    ...                      kind=4, body={0: "1.0", 1: 50_000, 2: 3, 3: 1, 4: 1, 5: 0})
    >>> tx = wire.decode(data)
    >>> tx.verify(s.public)
    >>> tx.id == tx_id
    True

How the bytes are checked, in the spec's order:

1. ``scan``: one left-to-right pass of our own over the raw bytes (length
   first, then every head: truncation, features outside the subset, long
   forms, map key order, nesting, entry and item counts). Nothing is
   built and nothing recurses, so ``cbor2`` only ever sees a small,
   well-formed, canonical document.
2. ``cbor2.loads``, then the decoded object is encoded again with our
   deterministic encoder and must give back the same bytes (a second,
   independent canonical check; map keys in RFC 8949 bytewise order,
   which is not always what ``cbor2.dumps(canonical=True)`` sorts by).
3. envelope, protected header, payload hash; then the payload as a
   document of its own, its fields, version and kid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cbor2
from lightnode.errors import DecodeError, VerifyError
from lightnode.firmware.ln import wire as spec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

__all__ = [
    "Sign1",
    "Signer",
    "Time",
    "Transaction",
    "decode",
    "decode_cose_sign1",
    "encode",
    "encode_payload",
    "envelope",
    "from_parts",
    "join",
    "make",
    "protected_header",
    "scan",
    "sig_structure",
    "verify",
]

_ED25519_ALGS = (spec.ALG_EDDSA, spec.ALG_ED25519)
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_SEQ_LIMIT = 1 << 63
_UINT_LIMIT = 1 << 64

# Where the scanner lets a tag stand, as a nesting depth (the spec: tag 18 at the envelope only).
TAGS_NONE = -1  # a payload, a protected header: no tags at all
TAGS_TOP = 0  # a standalone COSE_Sign1: the top-level item
TAGS_ENVELOPE = 1  # a transaction: an entry of the top-level array

# The smallest argument each long form may carry (RFC 8949 4.2.1: shortest form).
_MIN_ARG = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}


def _malformed(detail: str) -> DecodeError:
    return DecodeError(spec.R_MALFORMED, detail)


# -- the scanner -----------------------------------------------------------------


def scan(
    data: bytes, tag_depth: int = TAGS_NONE, max_bytes: int = spec.MAX_TX_BYTES
) -> list[tuple[int, int]]:
    """Check ``data`` is one well-formed, in-subset, canonical CBOR item within the hard limits.

    One left-to-right pass, nothing built, nothing recursive; the first
    fault met is the one raised, as ``DecodeError`` (oversized, malformed,
    unsupported or non-canonical). A tag is let through (any number: the
    caller judges it, ``bad-tag``) only at nesting depth ``tag_depth``.
    Returns the ``(start, end)`` byte spans of the top-level array's
    entries (empty if the item is not an array).

    At each head, in this order (the device's ``ln.cbor`` does the same):
    a missing byte or reserved additional information is malformed; an
    indefinite length unsupported (a lone break, an indefinite int or tag
    malformed); missing argument bytes malformed; floats and simple values
    other than false/true/null unsupported (a two-byte simple value below
    32 malformed); a tag out of place unsupported; a long form
    non-canonical; then the item counts against MAX_TOTAL_ITEMS, a string
    against the bytes left (malformed) and UTF-8 (malformed), a container
    against MAX_DEPTH and MAX_ITEMS (oversized). A map key, once scanned
    whole, must be an integer or text (unsupported) and sort strictly after
    the one before it in bytewise order (non-canonical). Bytes after the
    item are malformed.
    """
    n = len(data)
    if n > max_bytes:
        raise DecodeError(spec.R_OVERSIZED, f"{n} bytes, limit {max_bytes}")
    pos = 0
    total = 0
    spans: list[tuple[int, int]] = []
    # One frame per open array/map/tag: [entries left, major type, entries done, last key, entry start].
    stack: list[list[Any]] = []
    while True:
        if stack:
            f = stack[-1]
            if f[1] == 4:
                # Fast path for the bulk of a readings body: one-byte integers in an array,
                # which can fault on nothing but the item count. The last entry takes the
                # general path, which closes the array.
                top = len(stack) == 1
                while f[0] > 1 and pos < n:
                    ib = data[pos]
                    if ib >= 0x38 or 0x18 <= ib < 0x20:
                        break
                    total += 1
                    if total > spec.MAX_TOTAL_ITEMS:
                        raise _too_many(pos)
                    if top:
                        spans.append((pos, pos + 1))
                    pos += 1
                    f[0] -= 1
                    f[2] += 1
            f[4] = pos
        start = pos
        if pos >= n:
            raise _malformed(f"truncated at byte {pos}")
        ib = data[pos]
        pos += 1
        mt = ib >> 5
        ai = ib & 31
        if ai < 24:
            arg = ai
        elif ai < 28:
            size = 1 << (ai - 24)
            if pos + size > n:
                raise _malformed(f"truncated head at byte {start}")
            arg = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        elif ai == 31:
            if 2 <= mt <= 5:
                raise DecodeError(spec.R_UNSUPPORTED, f"indefinite length at byte {start}")
            raise _malformed(f"break or indefinite item at byte {start}")
        else:
            raise _malformed(f"reserved additional information {ai} at byte {start}")

        if mt == 7:
            total += 1
            if total > spec.MAX_TOTAL_ITEMS:
                raise _too_many(start)
            if ai < 20 or ai > 22:
                if ai == 24 and arg < 32:
                    raise _malformed(f"two-byte simple value {arg} at byte {start}")
                what = "floating point" if 25 <= ai <= 27 else f"simple value {arg}"
                raise DecodeError(spec.R_UNSUPPORTED, f"{what} at byte {start}")
        else:
            if mt == 6 and len(stack) != tag_depth:
                raise DecodeError(spec.R_UNSUPPORTED, f"tag {arg} at byte {start}")
            if ai >= 24 and arg < _MIN_ARG[ai]:
                raise DecodeError(spec.R_NON_CANONICAL, f"long form of {arg} at byte {start}")
            total += 1
            if total > spec.MAX_TOTAL_ITEMS:
                raise _too_many(start)
            if mt == 2 or mt == 3:
                if arg > n - pos:
                    raise _malformed(f"string of {arg} bytes at byte {start} runs past the end")
                end = pos + arg
                if mt == 3:
                    try:
                        data[pos:end].decode("utf-8")
                    except UnicodeDecodeError:
                        raise _malformed(f"invalid UTF-8 at byte {start}") from None
                pos = end
            elif mt >= 4:
                if len(stack) >= spec.MAX_DEPTH:
                    raise DecodeError(
                        spec.R_OVERSIZED, f"nested deeper than {spec.MAX_DEPTH} at byte {start}"
                    )
                if mt == 6:
                    stack.append([1, 6, 0, None, 0])
                    continue
                if arg > spec.MAX_ITEMS:
                    raise DecodeError(spec.R_OVERSIZED, f"{arg} entries at byte {start}")
                if arg:
                    stack.append([arg * 2 if mt == 5 else arg, mt, 0, None, 0])
                    continue

        # An item is complete: it may complete its container, and that one its own.
        while stack:
            f = stack[-1]
            if f[1] == 5 and not f[2] & 1:
                kstart = f[4]
                if data[kstart] >> 5 not in (0, 1, 3):
                    raise DecodeError(
                        spec.R_UNSUPPORTED, f"map key neither integer nor text at byte {kstart}"
                    )
                key = data[kstart:pos]
                if f[3] is not None and not f[3] < key:
                    why = "repeated" if key == f[3] else "out of order"
                    raise DecodeError(spec.R_NON_CANONICAL, f"map key at byte {kstart} {why}")
                f[3] = key
            elif f[1] == 4 and len(stack) == 1:
                spans.append((f[4], pos))
            f[0] -= 1
            f[2] += 1
            if f[0]:
                break
            stack.pop()
        else:
            break
    if pos != n:
        raise _malformed(f"{n - pos} bytes after the item, from byte {pos}")
    return spans


def _too_many(at: int) -> DecodeError:
    return DecodeError(
        spec.R_OVERSIZED, f"more than {spec.MAX_TOTAL_ITEMS} data items at byte {at}"
    )


def _tag_head(data: bytes, at: int) -> tuple[int, int]:
    """The number and content offset of the (scanned, canonical) tag whose head is at ``at``."""
    ai = data[at] & 31
    if ai < 24:
        return ai, at + 1
    size = 1 << (ai - 24)
    return int.from_bytes(data[at + 1 : at + 1 + size], "big"), at + 1 + size


# -- deterministic encoding --------------------------------------------------------


def _head(mt: int, arg: int) -> bytes:
    b = mt << 5
    if arg < 24:
        return bytes((b | arg,))
    if arg < 0x100:
        return bytes((b | 24, arg))
    if arg < 0x10000:
        return bytes((b | 25,)) + arg.to_bytes(2, "big")
    if arg < 0x100000000:
        return bytes((b | 26,)) + arg.to_bytes(4, "big")
    if arg < _UINT_LIMIT:
        return bytes((b | 27,)) + arg.to_bytes(8, "big")
    raise ValueError("integer out of CBOR's 64-bit range")


_SMALL = 4096
_POS_INT = [_head(0, i) for i in range(_SMALL)]
_NEG_INT = [_head(1, i) for i in range(_SMALL)]  # -1 - i


class _Budget:
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items = 0


def _enc(x: Any, out: bytearray, depth: int, budget: _Budget, tags: bool) -> None:
    budget.items += 1
    t = type(x)
    if t is int:
        if 0 <= x < _SMALL:
            out += _POS_INT[x]
        elif -_SMALL <= x < 0:
            out += _NEG_INT[-1 - x]
        elif x >= 0:
            out += _head(0, x)
        else:
            out += _head(1, -1 - x)
        return
    if t is list or t is tuple:
        if len(x) > spec.MAX_ITEMS:
            raise ValueError(f"array of {len(x)} entries, limit {spec.MAX_ITEMS}")
        if depth >= spec.MAX_DEPTH:
            raise ValueError(f"nested deeper than {spec.MAX_DEPTH}")
        out += _head(4, len(x))
        for v in x:
            if type(v) is int and 0 <= v < _SMALL:  # the bulk of a readings body
                budget.items += 1
                out += _POS_INT[v]
            else:
                _enc(v, out, depth + 1, budget, tags)
        return
    if t is bytes or t is bytearray or t is memoryview:
        b = bytes(x)
        out += _head(2, len(b))
        out += b
        return
    if t is str:
        try:
            b = x.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text is not encodable as UTF-8: {e}") from None
        out += _head(3, len(b))
        out += b
        return
    if x is None:
        out += b"\xf6"
        return
    if t is bool:
        out += b"\xf5" if x else b"\xf4"
        return
    if isinstance(x, Mapping):
        if len(x) > spec.MAX_ITEMS:
            raise ValueError(f"map of {len(x)} entries, limit {spec.MAX_ITEMS}")
        if depth >= spec.MAX_DEPTH:
            raise ValueError(f"nested deeper than {spec.MAX_DEPTH}")
        pairs = []
        for k, v in x.items():
            if type(k) is not int and type(k) is not str:
                raise TypeError(f"map key {k!r}: keys are integers or text")
            kb = bytearray()
            _enc(k, kb, depth + 1, budget, tags)
            pairs.append((bytes(kb), v))
        pairs.sort(key=lambda p: p[0])  # RFC 8949 4.2.1: bytewise order of the encoded keys
        out += _head(5, len(pairs))
        for key, v in pairs:
            out += key
            _enc(v, out, depth + 1, budget, tags)
        return
    if tags and isinstance(x, cbor2.CBORTag):
        if depth >= spec.MAX_DEPTH:
            raise ValueError(f"nested deeper than {spec.MAX_DEPTH}")
        out += _head(6, x.tag)
        _enc(x.value, out, depth + 1, budget, tags)
        return
    raise TypeError(f"{t.__name__} is outside the wire format's CBOR subset")


def encode(obj: Any) -> bytes:
    """``obj`` (int, bytes, str, list, tuple, dict, bool, None) as deterministic CBOR.

    RFC 8949 4.2.1: shortest forms, definite lengths, map keys sorted by
    the bytewise order of their encodings. TypeError for anything outside
    the subset, ValueError past a hard limit.
    """
    out = bytearray()
    budget = _Budget()
    _enc(obj, out, 0, budget, False)
    if budget.items > spec.MAX_TOTAL_ITEMS:
        raise ValueError(f"{budget.items} data items, limit {spec.MAX_TOTAL_ITEMS}")
    return bytes(out)


def _reencode(obj: Any) -> bytes | None:
    out = bytearray()
    try:
        _enc(obj, out, 0, _Budget(), True)
    except (TypeError, ValueError):
        return None
    return bytes(out)


def _bstr(b: bytes) -> bytes:
    return _head(2, len(b)) + b


# -- decoding one CBOR document ------------------------------------------------------


def _cbor2(doc: bytes) -> Any:
    try:
        return cbor2.loads(doc)
    except cbor2.CBORDecodeError as e:  # the scan let it through: cbor2 and we disagree
        raise _malformed(f"cbor2: {e}") from None


RECHECK = False  # also re-encode each decoded document and compare (see _load)


def _load(data: bytes, tag_depth: int = TAGS_NONE, max_bytes: int = spec.MAX_TX_BYTES) -> Any:
    """Scan, decode with cbor2, and check the bytes are exactly our encoding of what came out.

    cbor2 gives some tag numbers a meaning of its own (bignums, sets, ...),
    so it never sees a tag: a tagged item's content is decoded on its own
    and wrapped in a ``CBORTag`` with the number the bytes carry.
    """
    spans = scan(data, tag_depth, max_bytes)
    if tag_depth == TAGS_TOP and data[0] >> 5 == 6:
        number, content = _tag_head(data, 0)
        obj: Any = cbor2.CBORTag(number, _cbor2(data[content:]))
    elif tag_depth == TAGS_ENVELOPE and any(data[s] >> 5 == 6 for s, _ in spans):
        obj = []
        for s, e in spans:
            if data[s] >> 5 == 6:
                number, content = _tag_head(data, s)
                obj.append(cbor2.CBORTag(number, _cbor2(data[content:e])))
            else:
                obj.append(_cbor2(data[s:e]))
    elif tag_depth == TAGS_ENVELOPE and data[0] >> 5 != 4:
        raise _structure(
            "not an array [envelope, payload]"
        )  # a tag may sit in a map: keep cbor2 off it
    else:
        obj = _cbor2(data)
    # ``scan`` has already refused every non-deterministic form, byte by byte.
    # Re-encoding what cbor2 made and comparing is a second, independent check
    # that costs as much as the scan; tests/test_wire_canonical.py shows the two
    # agree on every input, so it runs only when asked (RECHECK).
    if RECHECK and _reencode(obj) != data:
        raise DecodeError(
            spec.R_NON_CANONICAL, "not the deterministic encoding of what it decodes to"
        )
    return obj


# -- transactions ------------------------------------------------------------------


class Time(NamedTuple):
    """The device's clock when it signed: us since 1970 (UTC), quality (``TQ_*``), uncertainty in us."""

    us: int
    quality: int
    uncertainty: int

    @property
    def quality_name(self) -> str:
        return spec.TQ_NAMES.get(self.quality, str(self.quality))


@dataclass(frozen=True, eq=False)
class Transaction:
    """A decoded transaction. Decoded means well-formed and self-consistent, not yet authentic: call ``verify``."""

    raw: bytes  # the wire transaction, [envelope, payload]
    envelope: bytes  # the COSE_Sign1, from its tag byte to the signature's last byte
    id: bytes  # SHA-256 of ``envelope``
    protected: bytes  # the protected header's bytes, as signed
    header: dict[int, Any]  # the protected header decoded
    alg: int
    kid: bytes
    payload: bytes
    payload_hash: bytes
    signature: bytes
    version: int
    device_id: bytes
    segment: str
    seq: int
    prev: bytes
    time: Time
    kind: int
    body: Any = field(repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transaction) and other.raw == self.raw

    def __repr__(self) -> str:
        return (
            f"Transaction(device={self.device_id.hex()}, segment={self.segment!r}, seq={self.seq}, "
            f"kind={self.kind_name}, id={self.id.hex()})"
        )

    def __hash__(self) -> int:
        return hash(self.raw)

    @property
    def kind_name(self) -> str:
        return spec.KIND_NAMES.get(self.kind, str(self.kind))

    @property
    def signed_bytes(self) -> bytes:
        """What Ed25519 signed: the COSE Sig_structure."""
        return sig_structure(self.protected, self.payload_hash)

    def verify(self, public_key: bytes) -> None:
        """Raise ``VerifyError`` unless the device with ``public_key`` signed this transaction."""
        key = _verify_key(public_key)
        if hashlib.sha256(self.payload).digest() != self.payload_hash:
            raise VerifyError(
                spec.R_PAYLOAD_HASH, "SHA-256 of the payload differs from the envelope's"
            )
        if self.kid != self.device_id:
            raise VerifyError(spec.R_KID, f"kid {self.kid.hex()}, device {self.device_id.hex()}")
        try:
            key.verify(self.signed_bytes, self.signature)
        except BadSignatureError:
            raise VerifyError(spec.R_SIGNATURE, "Ed25519 verification failed") from None

    def readings(self) -> list[Any]:
        """A readings body decoded (``lightnode.readings.Series``); DecodeError(bad-payload) if it is not right."""
        if self.kind != spec.KIND_READINGS:
            raise ValueError(f"a {self.kind_name} transaction has no readings")
        from lightnode import readings

        return list(readings.decode_body(self.body))


def _verify_key(public_key: bytes) -> VerifyKey:
    if not isinstance(public_key, bytes | bytearray | memoryview):
        raise TypeError(f"public key: bytes expected, not {type(public_key).__name__}")
    key = bytes(public_key)
    if len(key) == spec.ED448_KEY_BYTES:
        raise VerifyError(spec.R_ALG, "a 57-byte key is Ed448, which is not supported")
    if len(key) != spec.ED25519_KEY_BYTES:
        raise ValueError(f"public key: {len(key)} bytes, an Ed25519 key has 32")
    return VerifyKey(key)


def _structure(detail: str) -> DecodeError:
    return DecodeError(spec.R_STRUCTURE, detail)


def _cose_parts(
    item: Any, payload_may_be_nil: bool
) -> tuple[int | None, bytes, dict[Any, Any], bytes | None, bytes]:
    """The tag (None if untagged) and the four parts of a COSE_Sign1, types checked."""
    tag = None
    if isinstance(item, cbor2.CBORTag):
        tag, item = item.tag, item.value
    if type(item) is not list or len(item) != 4:
        raise _structure("the envelope is not a COSE_Sign1 array of 4")
    protected, unprotected, payload, signature = item
    if type(protected) is not bytes:
        raise _structure("protected header not a byte string")
    if type(unprotected) is not dict:
        raise _structure("unprotected header not a map")
    if not (type(payload) is bytes or (payload_may_be_nil and payload is None)):
        raise _structure("envelope payload not a byte string")
    if type(signature) is not bytes:
        raise _structure("signature not a byte string")
    return tag, protected, unprotected, payload, signature


def _check_tag(tag: int | None) -> None:
    if tag != spec.COSE_SIGN1_TAG:
        raise DecodeError(
            spec.R_TAG, "untagged" if tag is None else f"tag {tag}, not {spec.COSE_SIGN1_TAG}"
        )


def _check_alg(header: Any) -> int:
    if type(header) is not dict:
        raise DecodeError(spec.R_PROTECTED, "protected header not a map")
    if spec.H_ALG not in header:
        raise DecodeError(spec.R_PROTECTED, "no alg in the protected header")
    alg = header[spec.H_ALG]
    if type(alg) is not int or alg not in _ED25519_ALGS:
        raise DecodeError(spec.R_ALG, f"alg {alg!r}")
    return alg


def _is_uint(x: object, limit: int = _UINT_LIMIT) -> bool:
    return type(x) is int and 0 <= x < limit


def _is_int_or_nil(x: object) -> bool:
    return x is None or type(x) is int


def _body_fault(kind: int, body: Any) -> str | None:
    if kind == spec.KIND_READINGS:
        if type(body) is not list or not body:
            return "readings body not an array of one or more series"
        if any(type(s) is not dict for s in body):
            return "readings series not a map"
        return None
    if type(body) is not dict:
        return f"{spec.KIND_NAMES[kind]} body not a map"
    if kind == spec.KIND_EVENT:
        if not set(body) <= {
            spec.E_TYPE,
            spec.E_SEVERITY,
            spec.E_POINT,
            spec.E_VALUE,
            spec.E_LIMIT,
            spec.E_TIME,
        }:
            return f"event keys {sorted(body, key=str)!r}"
        for k in (spec.E_TYPE, spec.E_SEVERITY, spec.E_TIME):
            if k not in body:
                return f"event without key {k}"
        if not _is_uint(body[spec.E_TYPE]):
            return "event type not a uint"
        if not _is_uint(body[spec.E_SEVERITY], 4):
            return "event severity not 0..3"
        if not (body.get(spec.E_POINT) is None or _is_uint(body[spec.E_POINT])):
            return "event point not a uint or null"
        if not (_is_int_or_nil(body.get(spec.E_VALUE)) and _is_int_or_nil(body.get(spec.E_LIMIT))):
            return "event value or limit not an integer or null"
        if not _is_uint(body[spec.E_TIME]):
            return "event source time not a uint"
        return None
    if kind == spec.KIND_HEARTBEAT:
        keys = (
            spec.HB_FIRMWARE,
            spec.HB_FREE_HEAP,
            spec.HB_JOURNAL,
            spec.HB_LINK,
            spec.HB_TIME_QUALITY,
            spec.HB_RESET_CAUSE,
        )
        if set(body) != set(keys):
            return f"heartbeat keys {sorted(body, key=str)!r}, expected 0..5"
        if type(body[spec.HB_FIRMWARE]) is not str:
            return "heartbeat firmware version not text"
        if not all(_is_uint(body[k]) for k in keys[1:]):
            return "heartbeat counters not uints"
        if body[spec.HB_TIME_QUALITY] not in spec.TQ_NAMES:
            return f"heartbeat time quality {body[spec.HB_TIME_QUALITY]!r}"
        return None
    return None


def _payload_fault(p: Any) -> str | None:
    """Why a decoded payload map breaks the spec's keys, types or ranges (None if it does not)."""
    if type(p) is not dict:
        return "payload not a map"
    if set(p) != set(spec.PAYLOAD_KEYS):
        return f"payload keys {sorted(p, key=str)!r}, expected 0..7"
    if not _is_uint(p[spec.P_VERSION]):
        return "version not a uint"
    dev = p[spec.P_DEVICE]
    if type(dev) is not bytes or not 1 <= len(dev) <= spec.MAX_DEVICE_ID:
        return f"device id not 1-{spec.MAX_DEVICE_ID} bytes"
    seg = p[spec.P_SEGMENT]
    if (
        type(seg) is not str
        or not 1 <= len(seg) <= spec.MAX_SEGMENT
        or not set(seg) <= _SEGMENT_CHARS
    ):
        return f"segment not 1-{spec.MAX_SEGMENT} characters of a-z0-9-"
    if not _is_uint(p[spec.P_SEQ], _SEQ_LIMIT):
        return "seq not a uint below 2^63"
    prev = p[spec.P_PREV]
    if type(prev) is not bytes or len(prev) != spec.HASH_BYTES:
        return f"prev not {spec.HASH_BYTES} bytes"
    t = p[spec.P_TIME]
    if type(t) is not list or len(t) != 3 or not all(_is_uint(x) for x in t):
        return "time not [uint, uint, uint]"
    if t[1] not in spec.TQ_NAMES:
        return f"time quality {t[1]}"
    kind = p[spec.P_KIND]
    if not _is_uint(kind) or kind not in spec.KIND_NAMES:
        return f"kind {kind!r}"
    return _body_fault(kind, p[spec.P_BODY])


def decode(data: bytes) -> Transaction:
    """A wire transaction ``[envelope, payload]`` checked against the spec (all but the signature).

    Raises ``DecodeError`` or ``VerifyError`` (payload-hash, kid-mismatch)
    with the first reason in the spec's order; TypeError if ``data`` is
    not bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data: bytes expected, not {type(data).__name__}")
    data = bytes(data)
    top = _load(data, TAGS_ENVELOPE)
    if type(top) is not list or len(top) != 2:
        raise _structure("not an array [envelope, payload]")
    env_item, payload = top
    if type(payload) is not bytes:
        raise _structure("payload not a byte string")
    tag, protected, unprotected, payload_hash, signature = _cose_parts(env_item, False)
    if payload_hash is None or len(payload_hash) != spec.HASH_BYTES:
        raise _structure(f"payload hash not {spec.HASH_BYTES} bytes")
    if len(signature) != spec.ED25519_SIG_BYTES:
        raise _structure(f"signature of {len(signature)} bytes, not {spec.ED25519_SIG_BYTES}")
    _check_tag(tag)
    header = _load(protected, TAGS_NONE)
    alg = _check_alg(header)
    kid = header.get(spec.H_KID)
    if (
        set(header) != {spec.H_ALG, spec.H_KID, spec.H_PAYLOAD_HASH_ALG, spec.H_PREIMAGE_CTY}
        or type(kid) is not bytes
        or not 1 <= len(kid) <= spec.MAX_DEVICE_ID
        or type(header[spec.H_PAYLOAD_HASH_ALG]) is not int
        or header[spec.H_PAYLOAD_HASH_ALG] != spec.ALG_SHA256
        or type(header[spec.H_PREIMAGE_CTY]) is not int
        or header[spec.H_PREIMAGE_CTY] != spec.CTY_CBOR
    ):
        raise DecodeError(
            spec.R_PROTECTED, "not exactly {1: alg, 4: kid (1-32 bytes), 258: -16, 259: 60}"
        )
    if unprotected:
        raise DecodeError(spec.R_UNPROTECTED, f"labels {sorted(unprotected, key=str)!r}")
    if hashlib.sha256(payload).digest() != payload_hash:
        raise VerifyError(spec.R_PAYLOAD_HASH, "SHA-256 of the payload differs from the envelope's")
    p = _load(payload, TAGS_NONE)
    fault = _payload_fault(p)
    if fault:
        raise DecodeError(spec.R_PAYLOAD, fault)
    if p[spec.P_VERSION] != spec.FORMAT_VERSION:
        raise DecodeError(spec.R_VERSION, f"version {p[spec.P_VERSION]}")
    if kid != p[spec.P_DEVICE]:
        raise VerifyError(spec.R_KID, f"kid {kid.hex()}, device {p[spec.P_DEVICE].hex()}")
    env = data[1 : len(data) - len(_head(2, len(payload))) - len(payload)]
    return Transaction(
        raw=data,
        envelope=env,
        id=hashlib.sha256(env).digest(),
        protected=protected,
        header=header,
        alg=alg,
        kid=kid,
        payload=payload,
        payload_hash=payload_hash,
        signature=signature,
        version=p[spec.P_VERSION],
        device_id=p[spec.P_DEVICE],
        segment=p[spec.P_SEGMENT],
        seq=p[spec.P_SEQ],
        prev=p[spec.P_PREV],
        time=Time(*p[spec.P_TIME]),
        kind=p[spec.P_KIND],
        body=p[spec.P_BODY],
    )


def verify(data: bytes, public_key: bytes) -> Transaction:
    """``decode(data)``, then ``verify(public_key)``: the transaction, or a WireError."""
    tx = decode(data)
    tx.verify(public_key)
    return tx


def join(envelope_bytes: bytes, payload: bytes) -> bytes:
    """The wire transaction ``[envelope, payload]`` from an envelope's bytes and a payload's."""
    return b"\x82" + bytes(envelope_bytes) + _bstr(bytes(payload))


def from_parts(envelope_bytes: bytes, payload: bytes) -> Transaction:
    """A transaction kept as two files (a ``.cose`` envelope and its ``.cbor`` payload), decoded.

    The envelope is scanned on its own first, so a fault in it is
    reported at its own byte offsets.
    """
    scan(bytes(envelope_bytes), TAGS_TOP)
    return decode(join(envelope_bytes, payload))


# -- plain COSE_Sign1 ------------------------------------------------------------------


@dataclass(frozen=True)
class Sign1:
    """A COSE_Sign1 object on its own (RFC 9052), e.g. a ``.cose`` envelope file."""

    raw: bytes
    protected: bytes
    header: dict[Any, Any]
    unprotected: dict[Any, Any]
    payload: bytes | None  # None: detached
    signature: bytes

    @property
    def alg(self) -> Any:
        return self.header.get(spec.H_ALG)

    @property
    def kid(self) -> bytes | None:
        kid = self.header.get(spec.H_KID, self.unprotected.get(spec.H_KID))
        return kid if type(kid) is bytes else None

    @property
    def is_hash_envelope(self) -> bool:
        """RFC 9995: the payload is a SHA-256 hash of a preimage kept elsewhere."""
        return self.header.get(spec.H_PAYLOAD_HASH_ALG) == spec.ALG_SHA256

    def verify(self, public_key: bytes, payload: bytes | None = None) -> None:
        """Check the Ed25519 signature; ``payload`` is the detached payload, if the object has none."""
        key = _verify_key(public_key)
        if type(self.alg) is not int or self.alg not in _ED25519_ALGS:
            raise VerifyError(spec.R_ALG, f"alg {self.alg!r}")
        content = self.payload if payload is None else payload
        if content is None:
            raise ValueError("a detached payload is needed to verify this object")
        if len(self.signature) != spec.ED25519_SIG_BYTES:
            raise VerifyError(spec.R_SIGNATURE, f"signature of {len(self.signature)} bytes")
        try:
            key.verify(sig_structure(self.protected, content), self.signature)
        except BadSignatureError:
            raise VerifyError(spec.R_SIGNATURE, "Ed25519 verification failed") from None


def decode_cose_sign1(data: bytes) -> Sign1:
    """A tagged COSE_Sign1 in our CBOR subset: structure, tag and protected header checked, not the signature."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data: bytes expected, not {type(data).__name__}")
    data = bytes(data)
    obj = _load(data, TAGS_TOP)
    tag, protected, unprotected, payload, signature = _cose_parts(obj, True)
    _check_tag(tag)
    header: dict[Any, Any] = _load(protected, TAGS_NONE) if protected else {}
    if type(header) is not dict:
        raise DecodeError(spec.R_PROTECTED, "protected header not a map")
    return Sign1(data, protected, header, unprotected, payload, signature)


# -- making transactions -------------------------------------------------------------


def protected_header(device_id: bytes) -> bytes:
    """The protected header a device emits: ``{1: -8, 4: kid, 258: -16, 259: 60}``."""
    _check_device_id(device_id)
    return encode(
        {
            spec.H_ALG: spec.ALG_EDDSA,
            spec.H_KID: bytes(device_id),
            spec.H_PAYLOAD_HASH_ALG: spec.ALG_SHA256,
            spec.H_PREIMAGE_CTY: spec.CTY_CBOR,
        }
    )


def _check_device_id(device_id: bytes) -> None:
    if not isinstance(device_id, bytes | bytearray):
        raise TypeError("device id: bytes expected")
    if not 1 <= len(device_id) <= spec.MAX_DEVICE_ID:
        raise ValueError(f"device id: {len(device_id)} bytes, must be 1-{spec.MAX_DEVICE_ID}")


_SIG1_CONTEXT = encode("Signature1")


def sig_structure(protected: bytes, payload_hash: bytes) -> bytes:
    """``["Signature1", protected, h'', payload]``: what Ed25519 signs."""
    return b"\x84" + _SIG1_CONTEXT + _bstr(protected) + b"\x40" + _bstr(payload_hash)


def envelope(protected: bytes, payload_hash: bytes, signature: bytes) -> bytes:
    """The tagged COSE_Sign1 bytes: ``18([protected, {}, payload-hash, signature])``."""
    return b"\xd2\x84" + _bstr(protected) + b"\xa0" + _bstr(payload_hash) + _bstr(signature)


def encode_payload(
    device_id: bytes,
    segment: str,
    seq: int,
    prev: bytes,
    time: Sequence[int],
    kind: int,
    body: Any,
    version: int = spec.FORMAT_VERSION,
) -> bytes:
    """The deterministic payload map of the spec; ValueError/TypeError if a field is out of the spec."""
    p = {
        spec.P_VERSION: version,
        spec.P_DEVICE: bytes(device_id)
        if isinstance(device_id, bytearray | memoryview)
        else device_id,
        spec.P_SEGMENT: segment,
        spec.P_SEQ: seq,
        spec.P_PREV: bytes(prev) if isinstance(prev, bytearray | memoryview) else prev,
        spec.P_TIME: list(time) if isinstance(time, Sequence) else time,
        spec.P_KIND: kind,
        spec.P_BODY: body,
    }
    fault = _payload_fault(p)
    if fault:
        raise ValueError(fault)
    return encode(p)


def make(
    seed: bytes,
    device_id: bytes,
    segment: str,
    seq: int,
    prev: bytes,
    time: Sequence[int],
    kind: int,
    body: Any,
) -> tuple[bytes, bytes]:
    """One signed wire transaction and its id, made as a device makes it (see ``Signer`` for many)."""
    return Signer(seed, device_id, segment).make(seq, prev, time, kind, body)


class Signer:
    """Signs transactions as one device: its key, its device id, its segment.

    Everything that does not change between transactions (the protected
    header, the start of the Sig_structure and of the envelope) is encoded
    once here.
    """

    def __init__(self, seed: bytes, device_id: bytes, segment: str) -> None:
        if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
            raise ValueError("seed: 32 bytes expected")
        _check_device_id(device_id)
        self.device_id = bytes(device_id)
        self.segment = segment
        self._key = SigningKey(bytes(seed))
        self.public: bytes = bytes(self._key.verify_key)
        self.protected = protected_header(self.device_id)
        self._sig_prefix = b"\x84" + _SIG1_CONTEXT + _bstr(self.protected) + b"\x40\x58\x20"
        self._env_prefix = b"\xd2\x84" + _bstr(self.protected) + b"\xa0\x58\x20"

    def make(
        self, seq: int, prev: bytes, time: Sequence[int], kind: int, body: Any
    ) -> tuple[bytes, bytes]:
        """``(transaction bytes, transaction id)``; ValueError if the fields or the size break the spec."""
        payload = encode_payload(self.device_id, self.segment, seq, prev, time, kind, body)
        h = hashlib.sha256(payload).digest()
        sig = self._key.sign(self._sig_prefix + h).signature
        env = self._env_prefix + h + b"\x58\x40" + sig
        data = b"\x82" + env + _bstr(payload)
        if len(data) > spec.MAX_TX_BYTES:
            raise ValueError(f"transaction of {len(data)} bytes, limit {spec.MAX_TX_BYTES}")
        return data, hashlib.sha256(env).digest()
