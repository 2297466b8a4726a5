"""The node's side of the filter (lightnode.filters): the pre-check never admits anyone.

10,000 revoked and 10,000 unregistered devices, each refused by NodeCheck,
including keys searched out to hit the filter's false positives; the
filter bytes equal to those the unix port makes; round trips and fuzz of
the layout and of verify_filter (only FilterError comes out).
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightnode import filters
from lightnode import micropython as mp
from lightnode.bloom import filter as bf
from lightnode.bloom import signed
from lightnode.errors import HarnessError
from lightnode.firmware.ln import ed25519
from lightnode.firmware.ln import wire as spec

SEGMENT = "feeder-7"
NOT_AFTER = 1767225600
SEED = bytes(range(32))
KID = b"node-1/filter"
PUBLIC = ed25519.SigningKey(SEED).public
NODE_KEYS = {KID: (PUBLIC, (spec.ROLE_FILTER,))}


def _device(i: int, tag: bytes = b"dev") -> tuple[bytes, bytes]:
    return b"%s-%d" % (tag, i), hashlib.sha256(b"%s-pk-%d" % (tag, i)).digest()


def _crafted(f: bf.BloomFilter, device_id: bytes, rng: random.Random) -> bytes:
    """A public key for ``device_id`` that ``f`` takes for a member: brute force."""
    while True:
        key = rng.randbytes(32)
        if f.might_contain(device_id, key):
            return key


@pytest.fixture(scope="module")
def fleet():
    registered = [_device(i) for i in range(10_000)]
    revoked = [_device(i, b"gone") for i in range(10_000)]
    unregistered = [_device(i, b"stranger") for i in range(10_000)]
    return registered, revoked, unregistered


def test_registered_pass_revoked_and_unregistered_refused(fleet):
    registered, revoked, unregistered = fleet
    # The worst case: the filter was built before the revocations, so every
    # revoked device still hits it; only the exact look-up stands between.
    f = filters.build(registered + revoked, 3, NOT_AFTER, segment=SEGMENT)
    current = dict(registered)  # the registry now: revoked ones gone
    check = filters.NodeCheck(current, f)
    assert all(check.check(d, k) for d, k in registered)
    assert sum(check.check(d, k) for d, k in revoked) == 0
    assert sum(check.check(d, k) for d, k in unregistered) == 0
    # every revoked one reached the look-up, and the strangers' false positives
    false_positives = sum(f.might_contain(d, k) for d, k in unregistered)
    assert false_positives < 10  # 1 expected at p = 1e-4 over 20,000 members
    assert check.counts["refused"] == 10_000 + false_positives
    assert check.counts["filtered"] == 10_000 - false_positives
    # the batch path gives the same answers
    everyone = registered[:2000] + revoked[:2000] + unregistered[:2000]
    assert check.check_many(everyone) == [True] * 2000 + [False] * 4000
    # a filter built from the current registry: the revoked are strangers
    f2 = filters.build(registered, 4, NOT_AFTER, segment=SEGMENT)
    check2 = filters.NodeCheck(current.get, f2)
    assert sum(check2.check(d, k) for d, k in revoked + unregistered) == 0


def test_crafted_false_positives_refused(fleet):
    registered, revoked, unregistered = fleet
    # A small filter (50 devices, p = 0.05) so that false positives are cheap to find.
    f = filters.build(registered[:50], 5, NOT_AFTER, p=0.05, segment=SEGMENT)
    check = filters.NodeCheck(dict(registered[:50]), f)
    rng = random.Random(1)
    crafted = []
    for d, _ in revoked[:100] + unregistered[:100]:
        crafted.append((d, _crafted(f, d, rng)))
    # a registered id with a forged key is refused too
    for d, _ in registered[:100]:
        crafted.append((d, _crafted(f, d, rng)))
    assert all(f.might_contain(d, k) for d, k in crafted)
    assert not any(check.check(d, k) for d, k in crafted)
    assert not any(check.check_many(crafted))
    assert check.counts["refused"] == 2 * len(crafted)


def test_batch_equals_scalar():
    f = filters.build([_device(i) for i in range(300)], 1, NOT_AFTER, p=0.2)
    keys = [os.urandom(32) for _ in range(5000)] + [f.key(*_device(i)) for i in range(300)]
    assert filters.maybe_members(keys, f) == [j for j, k in enumerate(keys) if f.has_key(k)]
    assert filters.maybe_members([], f) == []


def test_same_bytes_as_the_unix_port():
    try:
        mp.find_micropython()
    except HarnessError as e:
        pytest.skip(str(e))
    code = """
import hashlib
from binascii import hexlify
from lightnode.bloom import filter as bf
bits, hashes = bf.optimal(2000, 1e-3)
f = bf.BloomFilter(bits, hashes, 11, 1767225600, salt=bf.epoch_salt("feeder-7", 11))
for i in range(2000):
    f.add(b"dev-%d" % i, hashlib.sha256(b"dev-pk-%d" % i).digest())
mp_result({"sha256": hexlify(hashlib.sha256(f.to_bytes()).digest()).decode(), "n": f.size()})
"""
    run = mp.run_unix(code=code).check()
    f = filters.build([_device(i) for i in range(2000)], 11, NOT_AFTER, p=1e-3, segment=SEGMENT)
    data = f.to_bytes()
    assert run.results == [{"sha256": hashlib.sha256(data).hexdigest(), "n": len(data)}]


def test_sign_verify_and_hash():
    f = filters.build([_device(i) for i in range(100)], 9, NOT_AFTER, segment=SEGMENT)
    data = filters.sign(f, SEED, KID)
    assert filters.verify(data, NODE_KEYS, 9, NOT_AFTER, 4096) == f
    assert filters.filter_hash(data) == hashlib.sha256(data).digest()
    with pytest.raises(bf.FilterError) as e:
        filters.verify(data, NODE_KEYS, 10, NOT_AFTER, 4096)
    assert e.value.reason == bf.R_EPOCH


def test_fits():
    ok, msg = filters.fits("esp32", 24_126)
    assert not ok and "esp32 builds without the filter" in msg
    assert filters.fits("esp32s3", 24_126)[0] and filters.fits("pico2_w", 24_126)[0]
    assert not filters.fits("pico_w", 24_126)[0]
    assert filters.fits("pico_w", 4_000)[0]


members = st.lists(
    st.tuples(st.binary(min_size=1, max_size=32), st.binary(min_size=32, max_size=32)), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(members, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.floats(1e-6, 0.5), st.text(max_size=12))
def test_round_trip(devices, epoch, not_after, p, segment):
    f = filters.build(devices, epoch, not_after, p=p, segment=segment)
    g = bf.BloomFilter.from_bytes(f.to_bytes())
    assert g.to_bytes() == f.to_bytes()
    assert (g.bits, g.hashes, g.epoch, g.not_after, g.items, g.salt) == (
        f.bits, f.hashes, epoch, not_after, len(set(devices)), bf.epoch_salt(segment, epoch))
    assert all((d, k) in g for d, k in devices)


_SMALL = filters.build([_device(i) for i in range(20)], 2, NOT_AFTER, p=0.01, segment=SEGMENT)
_SMALL_BYTES = _SMALL.to_bytes()
_SIGNED = filters.sign(_SMALL, SEED, KID)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for at, value in edits:
        b[at % len(b)] = value
    return bytes(b[:cut] if cut is not None else b)


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=120), st.builds(_mutate, st.just(_SMALL_BYTES), edits,
                                                   st.none() | st.integers(0, 80))))
def test_fuzz_from_bytes(data):
    try:
        f = bf.BloomFilter.from_bytes(data)
    except bf.FilterError:
        return
    assert f.to_bytes() == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.builds(_mutate, st.just(_SIGNED), edits,
                                                   st.none() | st.integers(0, 200))))
def test_fuzz_verify_filter(data):
    try:
        f = signed.verify_filter(data, NODE_KEYS, 0, NOT_AFTER, 4096)
    except bf.FilterError as e:
        assert e.reason in bf.REASONS
        return
    assert f == _SMALL
