"""The node's side of the filter (lightnode.filters): the pre-check never admits anyone.

10,000 revoked and 10,000 unregistered devices, each refused by NodeCheck,
with and without its verdict cache, including keys searched out to hit
the filter's false positives; the cache against a real registry (a
revocation, quarantine or rotation takes effect on the next check; a new
epoch empties it) and under a flood of distinct strangers; the
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
from lightnode import filters, keys, registry
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


def test_rejections_hold_with_the_cache_on(fleet):
    registered, revoked, unregistered = fleet
    f = filters.build(registered + revoked, 3, NOT_AFTER, segment=SEGMENT)
    current = dict(registered)
    version = [0]
    check = filters.NodeCheck(current, f, state=lambda: version[0])
    for _ in range(3):  # cold, then twice from the cache
        assert all(check.check(d, k) for d, k in registered)
        assert sum(check.check(d, k) for d, k in revoked) == 0
        assert sum(check.check(d, k) for d, k in unregistered) == 0
        everyone = registered[:2000] + revoked[:2000] + unregistered[:2000]
        assert check.check_many(everyone) == [True] * 2000 + [False] * 4000
    # the registered pairs are answered from the cache: no look-up for them again
    # (10,000 revoked overflow the refused set, 4,096, so they are looked up again)
    assert check.cached[0] == 10_000 and check.cached[1] <= filters.REFUSED_MAX
    before = check.counts["looked_up"]
    assert all(check.check(d, k) for d, k in registered)
    assert check.counts["looked_up"] == before
    # a change to the mapping under a new stamp is seen at once
    del current[registered[0][0]]
    assert check.check(*registered[0])  # the stamp did not move: the cached verdict
    version[0] += 1
    assert not check.check(*registered[0])
    assert not check.check_many([registered[0]])[0]


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


def _registry(path, n):
    """A registry in a SQLite file: an admin and ``n`` devices; ``(reg, admin, devices)``."""
    reg = registry.open_registry(path)
    seed = keys.generate_seed()
    reg.init_admin("alice", keys.public_key(seed), seed)
    admin = reg.as_operator("alice", seed)
    devices = []
    for i in range(n):
        d, k = b"dev-%05d" % i, keys.public_key(keys.generate_seed())
        reg.add_device(d, k, SEGMENT, "pico_w", "0.1.0", "ab" * 32, admin)
        devices.append((d, k))
    return reg, admin, devices


def _live(reg):
    return [(d.device_id, d.public_key) for d in reg.devices() if d.quarantined is None]


def test_cache_follows_the_registry(tmp_path):
    reg, admin, devices = _registry(tmp_path / "registry.db", 200)
    f = filters.build(_live(reg), 1, NOT_AFTER, segment=SEGMENT)
    check = filters.NodeCheck(reg, f)
    for seq in range(3):  # warm: every device sends three transactions
        assert all(check.check(d, k, seq) for d, k in devices)
    assert check.counts["looked_up"] == 200 and check.cached == (200, 0)

    # revoked: the very next transaction is refused
    gone, gone_key = devices[7]
    reg.revoke_device(gone, "tampered", admin)
    assert not check.check(gone, gone_key, 3)
    assert check.cached == (0, 1)  # the new head emptied the cache
    assert all(check.check(d, k, 3) for d, k in devices if d != gone)

    # quarantined: the same
    bad, bad_key = devices[8]
    reg.quarantine_device(bad, 1, [bytes(32)], admin)
    assert not check.check(bad, bad_key, 4)
    assert not check.check_many([(bad, bad_key)], [4])[0]

    # rotated: the old key signs the sequence numbers below 10 only
    dev, old = devices[9]
    new = keys.public_key(keys.generate_seed())
    assert check.check(dev, old, 5)
    reg.rotate_device_key(dev, new, 10, admin)
    assert check.check(dev, old, 9)
    assert not check.check(dev, old, 10) and not check.check(dev, old, 11)
    assert check.check_many([(dev, old)] * 3, [8, 9, 10]) == [True, True, False]
    assert not check.check(dev, old)  # no sequence number: the current key only
    # the new key is not in this epoch's filter: refused until the next one
    assert not check.check(dev, new, 10)

    # a new epoch's filter empties the cache and takes the new key
    check.filter = filters.build(_live(reg), 2, NOT_AFTER, segment=SEGMENT)
    assert check.cached == (0, 0)
    assert check.check(dev, new, 10) and check.check(dev, new)
    assert not check.check(dev, new, 9)  # the old key's sequence numbers stay the old key's
    # the new filter holds current keys only: the old key is a stranger to it now
    assert not check.check(dev, old, 10) and not check.check(dev, old, 9)
    assert not check.check(gone, gone_key, 20) and not check.check(bad, bad_key, 20)

    # another process's change, folded in by catch_up, moves the head too
    other = registry.open_registry(tmp_path / "registry.db")
    other.revoke_device(devices[10][0], "lost", admin)
    assert check.check(*devices[10])  # this node has not read it yet
    assert reg.catch_up() == 1
    assert not check.check(*devices[10])
    other.close()
    reg.close()


def test_explicit_invalidate_and_no_stamp_no_cache():
    devices = [_device(i) for i in range(50)]
    f = filters.build(devices, 1, NOT_AFTER, segment=SEGMENT)
    current = dict(devices)
    plain = filters.NodeCheck(current, f)  # no state: never cached
    assert plain.check(*devices[0]) and plain.check(*devices[0])
    assert plain.cached == (0, 0) and plain.counts["looked_up"] == 2
    del current[devices[0][0]]
    assert not plain.check(*devices[0])
    stamped = filters.NodeCheck(dict(devices), f, state=lambda: 0)
    assert stamped.check(*devices[1]) and stamped.cached == (1, 0)
    stamped.invalidate()
    assert stamped.cached == (0, 0)
    # ids and keys as bytearrays are the same pairs
    assert stamped.check(bytearray(devices[1][0]), bytearray(devices[1][1]))
    assert stamped.check_many([(bytearray(devices[2][0]), devices[2][1])]) == [True]
    assert stamped.cached == (2, 0)
    # an id whose tail would make up a registered pair is refused (the key is 32 bytes)
    d, k = devices[3]
    assert not stamped.check(d[:-1], d[-1:] + k)
    with pytest.raises(ValueError):
        filters.NodeCheck(current, f, refused_max=-1)


def test_stranger_flood_bounded_and_filtered():
    registered = [_device(i) for i in range(10_000)]
    f = filters.build(registered, 1, NOT_AFTER, segment=SEGMENT)
    keys_of = dict(registered)
    calls = [0]

    def lookup(device_id):
        calls[0] += 1
        return keys_of.get(device_id)

    check = filters.NodeCheck(lookup, f, state=lambda: 0)
    assert all(check.check(d, k, 1) for d, k in registered)
    calls[0] = 0
    rng = random.Random(5)
    largest = 0
    flood = 200_000
    for i in range(flood):
        assert not check.check(b"x-%08d" % i, rng.randbytes(32), 2)
        largest = max(largest, sum(check.cached))
    # memory: the registered pairs and at most REFUSED_MAX strangers, at every step
    assert largest <= 10_000 + filters.REFUSED_MAX
    assert check.cached[0] == 10_000
    # the filter's job: an exact look-up for about 1 stranger in 10^4 (20 expected)
    assert calls[0] < 60, calls[0]
    assert calls[0] == check.counts["refused"]
    # the same through the batch path
    calls[0] = 0
    batch = [(b"y-%08d" % i, rng.randbytes(32)) for i in range(50_000)]
    assert not any(check.check_many(batch))
    assert calls[0] < 20 and sum(check.cached) <= 10_000 + filters.REFUSED_MAX
    # with no refused set at all, the same answers and no growth
    none = filters.NodeCheck(lookup, f, state=lambda: 0, refused_max=0)
    assert not any(none.check(d, k) for d, k in batch[:10_000])
    assert none.cached == (0, 0)


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
