"""The SDK scanner alone decides canonical form: it agrees with a full re-encode on every input.

``lightnode.wire`` refuses non-deterministic CBOR in its scanner, byte by
byte, and does not re-encode each decoded document in the hot path (it
costs as much as the scan). Here both run on generated documents —
canonical ones and ones broken in every way the subset can be broken (long
forms, unsorted or repeated keys, indefinite lengths, floats, stray bytes)
— and must agree: whatever the scanner accepts re-encodes to the same
bytes, and whatever re-encodes differently the scanner refused.
"""

import sys
from pathlib import Path

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode import wire
from lightnode.errors import WireError

sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))

ints = st.integers(-(2**64), 2**64 - 1)
leaf = ints | st.binary(max_size=20) | st.text(max_size=10) | st.booleans() | st.none()
docs = st.recursive(
    leaf,
    lambda kids: st.lists(kids, max_size=5)
    | st.dictionaries(st.integers(-30, 300) | st.text(max_size=4), kids, max_size=5),
    max_leaves=25,
)


def _noncanonical(obj):
    """Encodings of obj that cbor2 decodes but that are not the deterministic one."""
    out = [cbor2.dumps(obj)]  # cbor2's own: unsorted keys where the dict order differs
    if isinstance(obj, int) and 0 <= obj < 2**32:
        out.append(bytes([0x1B]) + obj.to_bytes(8, "big"))  # longest form
    if isinstance(obj, list):
        out.append(b"\x9f" + b"".join(wire.encode(x) for x in obj) + b"\xff")  # indefinite
    if isinstance(obj, dict) and len(obj) >= 2:
        items = list(obj.items())
        body = b"".join(wire.encode(k) + wire.encode(v) for k, v in reversed(sorted(
            items, key=lambda kv: wire.encode(kv[0]))))
        out.append(bytes([0xA0 + len(items)]) + body if len(items) < 24 else b"")  # reversed keys
    return [b for b in out if b]


def _agree(doc: bytes) -> None:
    try:
        wire.scan(doc, wire.TAGS_NONE)
        accepted = True
    except WireError:
        accepted = False
    try:
        obj = cbor2.loads(doc)
        same = wire._reencode(obj) == doc
    except Exception:  # cbor2 could not even decode it
        same = False
    if accepted:
        assert same, "the scanner accepted %s, which is not its deterministic encoding" % doc.hex()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs)
def test_canonical_and_broken_encodings(obj):
    try:
        good = wire.encode(obj)
    except (ValueError, TypeError):
        return
    _agree(good)
    for bad in _noncanonical(obj):
        _agree(bad)


@settings(max_examples=400, deadline=None)
@given(docs, st.data())
def test_mutated_encodings(obj, data):
    try:
        doc = bytearray(wire.encode(obj))
    except (ValueError, TypeError):
        return
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(doc) - 1))
        doc[i] = data.draw(st.integers(0, 255))
    _agree(bytes(doc))


def test_a_transaction_decodes_the_same_with_the_recheck_on():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import _window

    tx = _window.signed_transaction()["wire"]
    fast = wire.decode(tx)
    wire.RECHECK = True
    try:
        assert wire.decode(tx) == fast
    finally:
        wire.RECHECK = False
