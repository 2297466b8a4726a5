"""Property tests of the device's CBOR (ln.cbor) against cbor2, CPython only.

The device encoder must give cbor2's canonical bytes wherever the two
orders agree (map keys of one byte: small integers), every encoding must
decode back to the value with both decoders, and any bytes at all fed to
the device decoder end in a value or a CBORError, never another exception.
"""

import cbor2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lightnode.firmware.ln import cbor, wire
from lightnode.firmware.ln.errors import CBORError

INT64 = st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
SMALL_KEYS = st.integers(min_value=-24, max_value=23)  # one-byte encodings
LEAVES = st.one_of(
    INT64,
    st.binary(max_size=40),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
)


def _depth(x):
    if isinstance(x, list):
        return 1 + max((_depth(v) for v in x), default=0)
    if isinstance(x, dict):
        return 1 + max((_depth(v) for v in x.values()), default=0)
    return 0


def _tree(keys):
    return st.recursive(
        LEAVES,
        lambda inner: st.one_of(
            st.lists(inner, max_size=6),
            st.dictionaries(keys, inner, max_size=6),
        ),
        max_leaves=24,
    )


SMALL_KEY_TREES = _tree(SMALL_KEYS)
ANY_KEY_TREES = _tree(st.one_of(INT64, st.text(max_size=8)))

PROPS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(SMALL_KEY_TREES)
def test_dumps_equals_cbor2_canonical(x):
    assume(_depth(x) <= wire.MAX_DEPTH)
    assert cbor.dumps(x) == cbor2.dumps(x, canonical=True)


@PROPS
@given(ANY_KEY_TREES)
def test_round_trip_both_decoders(x):
    assume(_depth(x) <= wire.MAX_DEPTH)
    data = cbor.dumps(x)
    assert cbor.loads(data) == x
    assert cbor2.loads(data) == x
    # the decoder takes only the deterministic form, so re-encoding is the identity
    assert cbor.dumps(cbor.loads(data)) == data


def _only_cbor_error(data, **kw):
    try:
        obj = cbor.loads(data, **kw)
    except CBORError as e:
        assert e.reason in wire.REASONS
        return
    # what decodes is deterministic: it encodes back to the same bytes
    assert cbor.dumps(obj) == bytes(data)


@PROPS
@given(st.binary(max_size=64))
def test_random_bytes_refused_or_canonical(data):
    _only_cbor_error(data)
    _only_cbor_error(data, tag_depth=0)


@PROPS
@given(ANY_KEY_TREES, st.data())
def test_mutations_refused_or_canonical(x, draw):
    assume(_depth(x) <= wire.MAX_DEPTH)
    data = bytearray(cbor.dumps(x))
    for _ in range(draw.draw(st.integers(1, 3))):
        op = draw.draw(st.sampled_from(("flip", "set", "cut", "insert")))
        i = draw.draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw.draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw.draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = draw.draw(st.binary(min_size=1, max_size=9))
    _only_cbor_error(bytes(data), tag_depth=1)
