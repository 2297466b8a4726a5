"""Fuzzing the SDK's parsers of remote bytes: whatever comes in, a WireError or a result, nothing else.

DESIGN.md asks for a fuzz target per parser of remote bytes. These are
``lightnode.wire.decode`` (and ``Transaction.verify``/``readings``),
``decode_cose_sign1``, ``from_parts`` and the scanner under them. Inputs:
random bytes; valid transactions with bit flips, byte changes,
truncations, insertions and splices; payloads changed and hashed again
(so the payload checks are reached, not stopped at payload-hash); deep
nesting; heads that lie about lengths. Where the device's own decoder
(``ln.cbor``, ``ln.txn``, importable under CPython) sees the same bytes,
both must give the same reason.

Bounded for CI (well under a minute on two cores); set
``LIGHTNODE_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import hashlib
import os

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode import wire as codec
from lightnode.errors import WireError
from lightnode.firmware.ln import cbor as device_cbor
from lightnode.firmware.ln import txn as device_txn
from lightnode.firmware.ln import wire
from lightnode.firmware.ln.errors import WireError as DeviceWireError

EXAMPLES = int(os.environ.get("LIGHTNODE_FUZZ_EXAMPLES", "1500"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SEED = bytes(range(32))
SIGNER = codec.Signer(SEED, bytes.fromhex("4c4e0001a5c3e701"), "feeder-7")
TIME = (1_700_000_000_000_000, wire.TQ_NTP, 1500)
BODIES = [
    (
        wire.KIND_READINGS,
        [
            {
                0: TIME[0],
                1: 20_000,
                2: [0, 1000],
                3: [[1, 1, [50_012, 1, -2]], [2, 2, [9, 1, 0]]],
                4: [[3, 0]],
            }
        ],
    ),
    (wire.KIND_EVENT, {0: 3, 1: 2, 2: 1, 3: 50_512, 4: None, 5: TIME[0]}),
    (wire.KIND_HEARTBEAT, {0: "1.2.0", 1: 61_000, 2: 12, 3: 1, 4: 1, 5: 0}),
    (wire.KIND_OPERATOR, {"a": [True, False, None], 1000: b"\x00\xff", -1: "\u6c34"}),
]
VALID = [SIGNER.make(i, bytes(32), TIME, k, b)[0] for i, (k, b) in enumerate(BODIES)]


def sdk_reason(data: bytes) -> str | None:
    """Decode (and verify, and read the readings) ``data``: None, or the WireError's reason. Anything else fails the test."""
    try:
        tx = codec.decode(data)
        tx.verify(SIGNER.public)
        if tx.kind == wire.KIND_READINGS:
            tx.readings()
    except WireError as e:
        assert e.reason in wire.REASONS
        return e.reason
    return None


def device_reason(data: bytes) -> str | None:
    try:
        device_txn.decode(data)
    except DeviceWireError as e:
        return e.reason
    return None


def decode_reason(data: bytes) -> str | None:
    try:
        codec.decode(data)
    except WireError as e:
        return e.reason
    return None


def rehash(data: bytes, payload: bytes) -> bytes:
    """``data``'s envelope with the hash of a new ``payload`` (signature left as it was), and that payload."""
    env, _ = cbor2.loads(data)
    env.value[2] = hashlib.sha256(payload).digest()
    return cbor2.dumps([env, payload])


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    b = bytearray(data)
    for op, at, val in ops:
        if not b:
            break
        i = at % len(b)
        if op == 0:
            b[i] ^= 1 << (val % 8)  # bit flip
        elif op == 1:
            b[i] = val % 256  # byte change
        elif op == 2:
            del b[i:]  # truncation
        elif op == 3:
            b[i:i] = bytes([val % 256]) * (1 + val % 3)  # insertion
        elif op == 4:
            del b[i : i + 1 + val % 8]  # deletion
        else:
            other = VALID[val % len(VALID)]  # splice in a piece of another transaction
            j = val % len(other)
            b[i:] = other[j:]
    return bytes(b)


OPS = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 1 << 16), st.integers(0, 1 << 16)),
    min_size=1,
    max_size=4,
)


@fuzz
@given(st.binary(max_size=600))
def test_random_bytes(data):
    sdk_reason(data)
    for parse in (
        codec.decode_cose_sign1,
        lambda d: codec.from_parts(d, d),
        lambda d: codec.scan(d, codec.TAGS_ENVELOPE),
    ):
        try:
            parse(data)
        except WireError:
            pass


@fuzz
@given(st.sampled_from(VALID), OPS)
def test_mutated_transactions(data, ops):
    m = mutate(data, ops)
    got = sdk_reason(m)
    assert decode_reason(m) == device_reason(m)
    if got is None:
        assert codec.decode(m).raw == m


@fuzz
@given(st.sampled_from(VALID), OPS)
def test_mutated_payloads_rehashed(data, ops):
    payload = codec.decode(data).payload
    m = rehash(data, mutate(payload, ops))
    got = sdk_reason(m)
    assert got != wire.R_PAYLOAD_HASH
    assert decode_reason(m) == device_reason(m)


@fuzz
@given(st.sampled_from(VALID), OPS)
def test_mutated_envelopes_alone_and_in_pairs(data, ops):
    tx = codec.decode(data)
    env = mutate(tx.envelope, ops)
    for parse in (
        lambda: codec.decode_cose_sign1(env).verify(SIGNER.public),
        lambda: codec.from_parts(env, tx.payload),
    ):
        try:
            parse()
        except WireError:
            pass


# Structured inputs: CBOR trees (floats, tags, undefined, big ints included) encoded by
# cbor2, in canonical form and not, wrapped as a payload or as a whole transaction.
leaves = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.just(cbor2.undefined),
    st.builds(cbor2.CBORTag, st.sampled_from([1, 2, 18, 24, 258, 55799]), st.integers(0, 5)),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=6),
        st.dictionaries(st.one_of(st.integers(-30, 300), st.text(max_size=4)), kids, max_size=6),
    ),
    max_leaves=40,
)


@fuzz
@given(trees, st.booleans(), st.sampled_from(range(len(VALID))))
def test_structured_payloads_and_bodies(tree, canonical, i):
    data = VALID[i]
    p = cbor2.loads(codec.decode(data).payload)
    p[7] = tree
    for payload in (cbor2.dumps(p, canonical=canonical), cbor2.dumps(tree, canonical=canonical)):
        m = rehash(data, payload)
        sdk_reason(m)
        assert decode_reason(m) == device_reason(m)
    whole = cbor2.dumps(tree, canonical=canonical)
    sdk_reason(whole)
    assert decode_reason(whole) == device_reason(whole)


@fuzz
@given(
    st.lists(
        st.sampled_from(
            [b"\x81", b"\xa1\x00", b"\xd2", b"\x9f", b"\xbf\x00", b"\x5f", b"\xd8\x18"]
        ),
        min_size=1,
        max_size=40,
    ),
    st.binary(max_size=3),
)
def test_deep_nesting(heads, tail):
    doc = b"".join(heads) + (tail or b"\x00")
    for d in (doc, b"\x82" + doc + b"\x40"):
        r = sdk_reason(d)
        assert r != wire.R_STRUCTURE or len(heads) <= wire.MAX_DEPTH
    # nesting deeper than the limit inside an otherwise good payload is oversized, never a crash
    m = rehash(VALID[2], b"\xa1\x00" + b"\x81" * (wire.MAX_DEPTH + len(heads)) + b"\x00")
    assert sdk_reason(m) == wire.R_OVERSIZED


@fuzz
@given(st.integers(0, 7), st.integers(24, 27), st.integers(0, 2**64 - 1), st.binary(max_size=16))
def test_lying_lengths(major, ai, n, rest):
    size = 1 << (ai - 24)
    head = bytes([major << 5 | ai]) + (n % (1 << (8 * size))).to_bytes(size, "big")
    for d in (head + rest, b"\x82" + head + rest, rehash(VALID[2], b"\xa1\x00" + head + rest)):
        assert sdk_reason(d) is not None
        assert decode_reason(d) == device_reason(d)


@fuzz
@given(st.data())
def test_scanner_agrees_with_the_device_scanner(data):
    doc = data.draw(st.one_of(st.binary(max_size=80), st.builds(lambda t: cbor2.dumps(t), trees)))
    depth = data.draw(st.sampled_from([codec.TAGS_NONE, codec.TAGS_TOP, codec.TAGS_ENVELOPE]))
    try:
        codec.scan(doc, depth)
        ours = None
    except WireError as e:
        ours = e.reason
    try:
        device_cbor.loads(doc, tag_depth=depth)
        theirs = None
    except DeviceWireError as e:
        theirs = e.reason
    assert ours == theirs, doc.hex()


@fuzz
@given(
    st.binary(min_size=1, max_size=32),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32),
    st.integers(0, 2**63 - 1),
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3), st.integers(0, 2**64 - 1)),
    st.sampled_from(BODIES),
)
def test_payload_bytes_match_the_device_encoder(device, segment, seq, time, kind_body):
    kind, body = kind_body
    ours = codec.encode_payload(device, segment, seq, bytes(32), time, kind, body)
    assert ours == device_txn.encode_payload(device, segment, seq, bytes(32), time, kind, body)
